"""Where the network may settle a race in doubt: the evidence for ``CLEAR_NETWORK_LEAD``.

Registers every case of the given pairs tables twice with the default network: never asking the network
(a race in doubt always takes the second look and its final) and always trusting it (a race in doubt
always polishes the network's pose alone), recording the network's fair lead there (its pose against its
two strongest different rivals, all corrected by the network). For each threshold it prints the share of
cases that would take the network's word, the success rate of the mixed pipeline and the cases it loses
or gains against never asking, and the median and mean time of each variant.
Use development tables only (``make_hard_cases.py --part dev``, phantom dev, shared); final parts report.

usage: python benchmarks/bench_fast_path.py PAIRS.csv [PAIRS.csv ...] [--thresholds 0.05,0.1,0.15,0.2]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from napari_histoaffine import transforms
from napari_histoaffine.evaluation.metrics import image_diagonal, landmark_stats
from napari_histoaffine.files.images import read_pair
from napari_histoaffine.files.tables import read_landmarks, read_pairs_table
from napari_histoaffine.registration import pipeline
from napari_histoaffine.registration.options import RegistrationOptions
from napari_histoaffine.registration.verdict import pose_margin

SUCCESS = 0.02


def median_rtre(result, row) -> float:
    moving, fixed = read_landmarks(row.moving_landmarks), read_landmarks(row.fixed_landmarks)
    moved = transforms.apply_to_points(result.matrix, moving)
    return landmark_stats(moved, fixed, image_diagonal(result.fixed_shape)).rtre_median


def run_case(row, options: RegistrationOptions) -> dict:
    """Both paths on one case: rTRE and seconds of each, and the network's fair lead."""
    moving, fixed = read_pair(row.moving_image, row.fixed_image, options.working_size)
    leads = []
    original = pipeline._network_race

    def recording(*arguments):
        race = original(*arguments)
        if race is not None:
            leads.append(pose_margin(race, arguments[6]))  # arguments[6]: the network's pose
        return race

    case = {}
    pipeline._network_race = recording
    try:
        for path, lead in (("race", math.inf), ("fast", -math.inf)):  # never / always trusting the network
            pipeline.CLEAR_NETWORK_LEAD = lead
            started = time.perf_counter()
            result = pipeline.register(moving, fixed, options)
            case[path + "_seconds"] = time.perf_counter() - started
            case[path + "_rtre"] = median_rtre(result, row)
    finally:
        pipeline._network_race = original
    case["lead"] = leads[-1] if leads else -math.inf  # no lead: the race was clear, the network never asked
    return case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="+")
    parser.add_argument("--thresholds", default="0.05,0.1,0.15,0.2")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    default = pipeline.CLEAR_NETWORK_LEAD
    options = RegistrationOptions()
    print("| table | cases | threshold | share settled by the network | success % (never asking) | lost | gained "
          "| median, mean s: never / always asking |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    try:
        for table in args.tables:
            cases = [run_case(row, options) for row in read_pairs_table(table)]
            lead = np.array([c["lead"] for c in cases])
            race, fast = (np.array([c[k] for c in cases]) for k in ("race_rtre", "fast_rtre"))
            times = " / ".join(f"{np.median([c[k] for c in cases]):.3f}, {np.mean([c[k] for c in cases]):.3f}"
                               for k in ("race_seconds", "fast_seconds"))
            for threshold in thresholds:
                takes = lead >= threshold
                mixed = np.where(takes, fast, race)
                lost = int(np.sum((mixed > SUCCESS) & (race <= SUCCESS)))
                gained = int(np.sum((mixed <= SUCCESS) & (race > SUCCESS)))
                print(f"| {table} | {len(cases)} | {threshold:g} | {takes.mean():.2f} | {100 * np.mean(mixed <= SUCCESS):.1f} "
                      f"({100 * np.mean(race <= SUCCESS):.1f}) | {lost} | {gained} | {times} |")
    finally:
        pipeline.CLEAR_NETWORK_LEAD = default
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
