"""How often the rotation/mirror search finds the true pose of benchmark cases.

For every case of an ANHIR/BIRL pairs table, the default pipeline's result is compared with the
truth: the rotation and mirror state of the best affine fit of the expert landmarks. A pose counts
as right when its angle is within ``--tolerance`` degrees and its mirror state is right; the
script also counts how often such a pose is among the candidates the refinement race considered
(the first search's 4, with the second look's added when the race was close): the recall.

usage: python benchmarks/bench_pose.py [PAIRS.csv ...] [--tolerance 10]
Tables from ``make_hard_cases.py`` (with a ``Kind`` column) are also reported per kind.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from napari_histoaffine.files.images import read_pair
from napari_histoaffine.files.tables import read_landmarks, read_pairs_table
from napari_histoaffine.plugin.layer_transforms import fit_affine
from napari_histoaffine.registration.options import DEFAULT_WORKING_SIZE
from napari_histoaffine.registration.pipeline import register
from napari_histoaffine.transforms import angle_difference, rotation_and_mirror

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="*", default=[str(SHARED / "data/bench-lung-lesion-3/pairs.csv")])
    parser.add_argument("--tolerance", type=float, default=10.0)
    args = parser.parse_args(argv)
    for table in args.tables:
        rows = []
        for pair, meta in zip(read_pairs_table(table), pd.read_csv(table).itertuples()):
            truth = fit_affine(read_landmarks(pair.moving_landmarks), read_landmarks(pair.fixed_landmarks))
            true_angle, true_mirror = rotation_and_mirror(truth)
            result = register(*read_pair(pair.moving_image, pair.fixed_image, DEFAULT_WORKING_SIZE))
            found_angle, found_mirror = rotation_and_mirror(result.matrix)
            error = angle_difference(found_angle, true_angle)
            among = any(angle_difference(c.angle_deg, true_angle) <= args.tolerance and c.flipped == true_mirror
                        for c in result.candidates)
            rows.append({"case": pair.case, "kind": getattr(meta, "Kind", "all"),
                         "flip": bool(getattr(meta, "Flip", 0)), "angle_error": error,
                         "mirror_ok": found_mirror == true_mirror, "candidates": len(result.candidates),
                         "found": error <= args.tolerance and found_mirror == true_mirror, "among": among})
        frame = pd.DataFrame(rows)
        flipped = frame[frame.flip]
        print(f"{table}: {len(frame)} cases; registered pose right (≤ {args.tolerance:g}°, right mirror state) in "
              f"{100 * frame.found.mean():.1f}%; truth among the candidates the race considered: "
              f"{100 * frame.among.mean():.1f}% (4, or up to 8 after a second look: "
              f"{100 * (frame.candidates > 4).mean():.0f}% of cases); median angle error {frame.angle_error.median():.1f}°, "
              f"max {frame.angle_error.max():.1f}°; mirrored cases: {len(flipped)}, mirror detected in "
              f"{flipped.mirror_ok.sum()}")
        if frame.kind.nunique() > 1:  # the hard benchmark's kinds of case
            print(frame.groupby("kind")[["found", "among"]].mean().mul(100).round(1).to_string())
        missed = frame[~frame.among]
        if len(missed):
            print("true pose not among the candidates:", ", ".join(missed.case))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
