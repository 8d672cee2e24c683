"""Landmark error measures as in ANHIR: TRE, rTRE (TRE / target image diagonal), success, robustness."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError

SUCCESS_RTRE = 0.02


def image_diagonal(shape) -> float:
    """Diagonal in pixels of an image of ``shape`` (rows, cols, ...)."""
    return float(np.hypot(shape[0], shape[1]))


def _paired(moved_xy, fixed_xy) -> tuple[np.ndarray, np.ndarray]:
    moved = np.asarray(moved_xy, float).reshape(-1, 2)
    fixed = np.asarray(fixed_xy, float).reshape(-1, 2)
    if len(moved) != len(fixed):
        raise InputError(f"landmark sets differ in length: {len(moved)} moving vs {len(fixed)} fixed landmarks")
    if len(moved) == 0:
        raise InputError("no landmarks to compare")
    return moved, fixed


def tre(moved_xy, fixed_xy) -> np.ndarray:
    """Euclidean distance of each moved landmark to its fixed counterpart, in fixed pixels."""
    moved, fixed = _paired(moved_xy, fixed_xy)
    return np.linalg.norm(moved - fixed, axis=1)


def tre_um(moved_xy, fixed_xy, pixel_size_um) -> np.ndarray:
    """:func:`tre` in µm: each axis's difference times the fixed image's ``(x, y)`` pixel size in µm."""
    moved, fixed = _paired(moved_xy, fixed_xy)
    return np.linalg.norm((moved - fixed) * np.asarray(pixel_size_um, float).reshape(1, 2), axis=1)


@dataclass(frozen=True)
class LandmarkStats:
    """rTRE summary of one registered pair."""

    rtre_median: float
    rtre_mean: float
    rtre_max: float
    success: bool
    robustness: float

    def as_dict(self) -> dict:
        return asdict(self)


def landmark_stats(moved_xy, fixed_xy, diagonal: float, initial_xy=None) -> LandmarkStats:
    """rTRE statistics; ``robustness`` is the share of landmarks closer than they were at ``initial_xy``."""
    rtre = tre(moved_xy, fixed_xy) / diagonal
    robustness = float("nan")
    if initial_xy is not None:
        robustness = float(np.mean(rtre < tre(initial_xy, fixed_xy) / diagonal))
    median = float(np.median(rtre))
    return LandmarkStats(median, float(np.mean(rtre)), float(np.max(rtre)), median <= SUCCESS_RTRE, robustness)
