"""The verdict on a registration without landmarks: how sure it is, and whether a person should look.

Absolute similarity does not transfer between specimens and stains (a wrong pose of one pair can
fit better than the right pose of another), so the verdict compares the result with the other
poses the refinement race tried on the *same* pair: a right pose beats every genuinely different
pose clearly, while on a near-symmetric section several poses, often a pose and its mirror image,
end almost level. A second, weaker signal catches a right pose that cannot be placed precisely:
sections that share almost no structure at the result (a very low final NCC). ``confidence`` maps
each signal to 0–1 with a logistic curve and takes the smaller; the constants were chosen on the
development part of the hard benchmark (``benchmarks/make_hard_cases.py --part dev``) only: every
wrong pose there led by ≤ 0.031, every right one by ≥ 0.047, and no right result had NCC < 0.29.
"""
from __future__ import annotations

import numpy as np

from . import transforms
from .results import Verdict

# logistic confidences: 0.5 at the midpoint; flagged below 0.5
MARGIN_MIDPOINT, MARGIN_WIDTH = 0.04, 0.01  # race margin, structure NCC at the race scale
NCC_MIDPOINT, NCC_WIDTH = 0.25, 0.03        # final structure NCC
FLAG_BELOW = 0.5
SAME_POSE_DEG = 10.0  # refined poses of one mirror state closer than this in rotation are one pose


def _logistic(value: float, midpoint: float, width: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip((value - midpoint) / width, -60.0, 60.0))))


def assess(race_matrices: np.ndarray, race_similarities: list[float], winner: int, final_ncc: float) -> Verdict:
    """Verdict on the start ``winner`` of a refinement race (working moving → fixed matrices and their similarities).

    ``final_ncc`` is the structure NCC of the finished registration. Two refined starts are
    different poses when their mirror states differ or their rotations differ by more than
    ``SAME_POSE_DEG``; scale and shift do not count (the race's few steps leave those unfinished).
    """
    rotations = [transforms.rotation_and_mirror(m) for m in race_matrices]
    mirrored = [m for _, m in rotations]
    different = [i for i in range(len(race_matrices)) if i != winner and (
        mirrored[i] != mirrored[winner]
        or transforms.angle_difference(rotations[i][0], rotations[winner][0]) > SAME_POSE_DEG)]
    best = race_similarities[winner]
    rival = max(different, key=lambda i: race_similarities[i], default=None)
    margin = best - race_similarities[rival] if rival is not None else best
    pose_confidence = _logistic(margin, MARGIN_MIDPOINT, MARGIN_WIDTH)
    fit_confidence = _logistic(final_ncc, NCC_MIDPOINT, NCC_WIDTH)
    confidence = min(pose_confidence, fit_confidence)
    flagged = confidence < FLAG_BELOW
    other_mirror = [i for i in different if mirrored[i] != mirrored[winner]]
    alternative = max(other_mirror or different, key=lambda i: race_similarities[i], default=None)
    if not flagged:
        reason = ("clear: every other pose tried fits worse" if rival is None else
                  f"clear: the best different pose fits worse by {margin:.2f} NCC")
    elif pose_confidence >= FLAG_BELOW:
        reason = f"weak fit: the sections share little structure at this pose (NCC {final_ncc:.2f})"
    elif rival is None:
        reason = "weak: too little structure to tell poses apart"
    else:
        how = "better" if margin < 0 else "almost as well"
        turn = transforms.angle_difference(rotations[rival][0], rotations[winner][0])
        reason = (f"mirror ambiguous: the mirrored pose fits {how}" if mirrored[rival] != mirrored[winner]
                  else f"rotation ambiguous: a pose turned by {turn:.0f}° fits {how}")
    return Verdict(confidence, flagged, reason, alternative, float(margin))
