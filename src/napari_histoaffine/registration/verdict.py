"""The verdict on a registration without landmarks: how sure it is, and whether a person should look.

Absolute similarity does not transfer between specimens and stains (a wrong pose of one pair can
fit better than the right pose of another), so the verdict compares the result with the other
poses tried on the *same* pair: a right pose beats every genuinely different pose clearly, while
on a near-symmetric section several poses, often a pose and its mirror image, end almost level.
The margin comes from the pipeline's final, where close rivals are refined side by side up to
192 px, or, when the race had no close rival, from the race's clear lead; both count only the
pixels where the moving image has data. A second, weaker signal catches a right pose that cannot
be placed precisely: sections that share almost no structure at the result (a low final NCC over
the whole fixed image). ``confidence`` maps each signal to 0–1 with a logistic curve and takes
the smaller. The constants were chosen on development cases of the hard benchmark only: first on
the four published kinds (``benchmarks/make_hard_cases.py --part dev``, ``--seed 3003`` and ``--seed
4004``), where the wrong poses (6 cases) led by 0.005–0.036 and 4 of 245 right results by less than
0.04; then, with eleven kinds (lung hard dev, 224 cases, and phantom hard dev, 463) whose wrong poses
fit pen strokes or foreign fragments, the margin's midpoint moved from 0.04 to 0.07: flagged wrong
results 42/64 → 57/64, flagged right ones 7/623 → 20/623, none of the 120 shared and mirrored cases
(``benchmarks/bench_verdict.py`` on ``histoaffine evaluate`` results). The imprecise results with the
right pose share little structure (NCC 0.17–0.26) or none of it shows.
"""
from __future__ import annotations

import numpy as np

from .. import transforms
from .refine import Race
from .results import Verdict

# logistic confidences: 0.5 at the midpoint; flagged below 0.5
MARGIN_MIDPOINT, MARGIN_WIDTH = 0.07, 0.01  # lead over the best different pose, in structure NCC
NCC_MIDPOINT, NCC_WIDTH = 0.2, 0.02         # final structure NCC
FLAG_BELOW = 0.5
SAME_POSE_DEG = 10.0  # refined poses of one mirror state closer than this in rotation are one pose


def _logistic(value: float, midpoint: float, width: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip((value - midpoint) / width, -60.0, 60.0))))


def _different_poses(race: Race, winner: int) -> tuple[list[tuple[float, bool]], list[int]]:
    """Rotation and mirror state of every raced start, and the starts that are a different pose from the winner's.

    Two refined starts are different poses when their mirror states differ or their rotations differ
    by more than ``SAME_POSE_DEG``; scale and shift do not count (the race's few steps leave those
    unfinished).
    """
    poses = [transforms.rotation_and_mirror(m) for m in race.matrices]
    angle, mirrored = poses[winner]
    different = [i for i, (a, m) in enumerate(poses)
                 if i != winner and (m != mirrored or transforms.angle_difference(a, angle) > SAME_POSE_DEG)]
    return poses, different


def rivals(race: Race, winner: int, within: float, most: int = 3) -> list[int]:
    """Different poses worth a closer look: the best of the other mirror state, and up to ``most`` in all
    whose similarity is within ``within`` of the winner's (at least the best different one)."""
    poses, different = _different_poses(race, winner)
    ranked = sorted(different, key=lambda i: -race.similarities[i])
    close = [i for i in ranked if race.similarities[i] >= race.similarities[winner] - within] or ranked[:1]
    mirrored = [i for i in ranked if poses[i][1] != poses[winner][1]][:1]
    return list(dict.fromkeys(mirrored + close))[:most]


def pose_margin(race: Race, winner: int) -> float:
    """How far the winner's similarity leads the best different pose's (its own similarity when no other pose raced)."""
    _, different = _different_poses(race, winner)
    rival = max((race.similarities[i] for i in different), default=0.0)
    return race.similarities[winner] - rival


def assess(race: Race, winner: int, final_ncc: float) -> Verdict:
    """Verdict on the start ``winner`` of a refinement race; ``final_ncc`` is the finished registration's structure NCC."""
    poses, different = _different_poses(race, winner)
    similarities = race.similarities
    rival = max(different, key=lambda i: similarities[i], default=None)
    margin = similarities[winner] - (similarities[rival] if rival is not None else 0.0)  # as pose_margin
    pose_confidence = _logistic(margin, MARGIN_MIDPOINT, MARGIN_WIDTH)
    fit_confidence = _logistic(final_ncc, NCC_MIDPOINT, NCC_WIDTH)
    confidence = min(pose_confidence, fit_confidence)
    flagged = confidence < FLAG_BELOW
    mirrored = poses[winner][1]
    other_mirror = [i for i in different if poses[i][1] != mirrored]
    names_rival = flagged and pose_confidence < FLAG_BELOW and rival is not None  # the reason names that pose
    alternative = rival if names_rival else max(other_mirror or different, key=lambda i: similarities[i], default=None)
    if not flagged:
        reason = ("clear: every other pose tried fits worse" if rival is None else
                  f"clear: the best different pose fits worse by {margin:.2f} NCC")
    elif pose_confidence >= FLAG_BELOW:
        reason = f"weak fit: the sections share little structure at this pose (NCC {final_ncc:.2f})"
    elif rival is None:
        reason = "weak: too little structure to tell poses apart"
    else:
        how = "better" if margin < 0 else "almost as well"
        turn = transforms.angle_difference(poses[rival][0], poses[winner][0])
        reason = (f"mirror ambiguous: the mirrored pose fits {how}" if poses[rival][1] != mirrored
                  else f"rotation ambiguous: a pose turned by {turn:.0f}° fits {how}")
    if alternative is None:
        return Verdict(confidence, flagged, reason, None, float(margin))
    label = ("the other mirror state" if poses[alternative][1] != mirrored else
             f"the pose turned by {transforms.angle_difference(poses[alternative][0], poses[winner][0]):.0f}°")
    return Verdict(confidence, flagged, reason, race.indices[alternative], float(margin), label)
