"""Views that show how well two registered sections agree (no napari here).

A 50 % overlay of two stains of a round lesion looks plausible even when the section is mirrored;
these views make misalignment visible. All take the fixed image and the moving image already
warped onto the fixed grid (:func:`warped_onto_fixed`), as grayscale in [0, 1] or 8-bit colour.
"""
from __future__ import annotations

import numpy as np

from .. import transforms
from ..registration.preprocess import to_float, to_grayscale

VIEWS = ("checkerboard", "swipe", "difference", "false colour")


def warped_onto_fixed(moving: np.ndarray, fixed_shape, matrix: np.ndarray) -> np.ndarray:
    """The moving image in [0, 1] on the fixed grid (``matrix``: moving → fixed pixels, as the registration's);
    white where it has no pixels, as bright-field background."""
    return transforms.warp_image(to_float(moving), matrix, fixed_shape[:2], cval=1.0)


def _same_kind(fixed: np.ndarray, warped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as float colour when both have colour, else both as grayscale."""
    fixed = to_float(fixed)
    if fixed.ndim == warped.ndim == 3:
        return fixed, warped
    return to_grayscale(fixed), to_grayscale(warped)


def checkerboard(fixed: np.ndarray, warped: np.ndarray, tile: int) -> np.ndarray:
    """Tiles of ``tile`` pixels taken alternately from the fixed and the warped moving image."""
    fixed, warped = _same_kind(fixed, warped)
    rows, cols = np.indices(fixed.shape[:2]) // max(1, int(tile))
    take_moving = (rows + cols) % 2 == 1
    return np.where(take_moving[..., None] if fixed.ndim == 3 else take_moving, warped, fixed)


def swipe(fixed: np.ndarray, warped: np.ndarray, fraction: float) -> np.ndarray:
    """The warped moving image left of a vertical curtain at ``fraction`` of the width, the fixed right of it."""
    fixed, warped = _same_kind(fixed, warped)
    out = fixed.copy()
    edge = int(round(np.clip(fraction, 0.0, 1.0) * fixed.shape[1]))
    out[:, :edge] = warped[:, :edge]
    return out


def difference(fixed: np.ndarray, warped: np.ndarray) -> np.ndarray:
    """Absolute difference of the two grayscale images, each stretched to its own 1–99 % range."""
    def stretched(image):
        gray = to_grayscale(to_float(image))
        lo, hi = np.percentile(gray, [1, 99])
        return np.clip((gray - lo) / max(hi - lo, 1e-6), 0.0, 1.0)

    return np.abs(stretched(fixed) - stretched(warped))


def false_colour(fixed: np.ndarray, warped: np.ndarray) -> np.ndarray:
    """Fixed in magenta, moving in green, added: aligned tissue turns grey-white, misalignment coloured."""
    fixed_tissue = 1.0 - to_grayscale(to_float(fixed))
    moving_tissue = 1.0 - to_grayscale(to_float(warped))
    return np.clip(np.stack([fixed_tissue, moving_tissue, fixed_tissue], axis=-1), 0.0, 1.0)


def view(name: str, fixed: np.ndarray, warped: np.ndarray, parameter: float) -> np.ndarray:
    """One of :data:`VIEWS`; ``parameter`` is the checkerboard's tile size in pixels or the swipe's position."""
    if name == "checkerboard":
        return checkerboard(fixed, warped, int(parameter))
    if name == "swipe":
        return swipe(fixed, warped, parameter)
    if name == "difference":
        return difference(fixed, warped)
    if name == "false colour":
        return false_colour(fixed, warped)
    raise ValueError(f"unknown view {name!r}: one of {', '.join(VIEWS)}")
