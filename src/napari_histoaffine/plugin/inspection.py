"""Views that show how well two registered sections agree (no napari here).

A 50 % overlay of two stains of a round lesion looks plausible even when the section is mirrored;
these views make misalignment visible. All take the fixed image and the moving image already
warped onto the fixed grid (:func:`warped_onto_fixed`), as grayscale in [0, 1] or 8-bit colour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import transforms
from ..registration.grayscale import to_float, to_grayscale

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


def checkerboard(fixed: np.ndarray, warped: np.ndarray, tile: float, origin=(0.0, 0.0), step: float = 1.0) -> np.ndarray:
    """Tiles of ``tile`` pixels taken alternately from the fixed and the warped moving image; pixel ``(i, j)``
    of the images lies at ``origin + (i, j) * step`` in the pixels tiles are counted in (anchored to the image)."""
    fixed, warped = _same_kind(fixed, warped)
    rows, cols = fixed.shape[:2]
    tile = max(float(tile), 1e-6)
    rows = np.floor((origin[0] + np.arange(rows) * step) / tile + 1e-9).astype(int)[:, None]
    cols = np.floor((origin[1] + np.arange(cols) * step) / tile + 1e-9).astype(int)[None, :]
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


def view(name: str, fixed: np.ndarray, warped: np.ndarray, parameter: float, origin=(0.0, 0.0),
         step: float = 1.0) -> np.ndarray:
    """One of :data:`VIEWS`; ``parameter`` is the checkerboard's tile size in pixels or the swipe's position
    (``origin`` and ``step``: where the images' pixels lie in the pixels the tiles are counted in)."""
    if name == "checkerboard":
        return checkerboard(fixed, warped, parameter, origin, step)
    if name == "swipe":
        return swipe(fixed, warped, parameter)
    if name == "difference":
        return difference(fixed, warped)
    if name == "false colour":
        return false_colour(fixed, warped)
    raise ValueError(f"unknown view {name!r}: one of {', '.join(VIEWS)}")


# ---------------------------------------------------------------- the region in view, at screen resolution
MAX_SIDE = 1024  # a region view's longest side in pixels


@dataclass(frozen=True)
class Grid:
    """An output grid on the fixed image's level-0 pixels (napari data coordinates, pixel centres at integers):
    output pixel ``(i, j)`` is centred at ``origin + (i, j) * step``; an image layer with ``scale=(step, step)``
    and ``translate=origin`` on the fixed layer's affine lies exactly on it."""
    origin: tuple[float, float]
    step: float
    shape: tuple[int, int]

    def to_fixed_xy(self) -> np.ndarray:
        """Output pixels → fixed level-0 pixels, ``(x, y)``."""
        return transforms.compose(transforms.scaling(self.step), transforms.translation(self.origin[1], self.origin[0]))


def grid_in_view(corners_rc, canvas_hw, fixed_shape, max_side: int = MAX_SIDE) -> Grid | None:
    """The grid for the part of the fixed image inside the view: ``corners_rc`` are the canvas corners in fixed
    level-0 pixels, ``canvas_hw`` the canvas in screen pixels; about one output pixel per screen pixel, at most
    ``max_side`` a side. None when no part of the image is in view."""
    corners = np.asarray(corners_rc, float).reshape(-1, 2)
    low = np.maximum(corners.min(axis=0), -0.5)
    high = np.minimum(corners.max(axis=0), np.asarray(fixed_shape[:2], float) - 0.5)
    extent = high - low
    if not np.all(extent > 0):
        return None
    view_extent = corners.max(axis=0) - corners.min(axis=0)
    step = max(float(np.max(view_extent / np.maximum(np.asarray(canvas_hw, float), 1.0))),
               float(extent.max()) / max_side, 1e-3)
    shape = tuple(max(1, math.ceil(v / step - 1e-6)) for v in extent)
    return Grid((float(low[0] + step / 2), float(low[1] + step / 2)), step, shape)


def sample_region(levels, out_to_full: np.ndarray, shape, fill: float = 1.0) -> np.ndarray:
    """An image in [0, 1] (:func:`to_float`) sampled bilinearly at ``out_to_full @ (x, y, 1)`` (level-0 pixels) for
    every output pixel of ``shape``; ``levels``: the image's pyramid, finest first (numpy, dask or zarr arrays).
    Reads only the part of the coarsest level that is still as fine as the output (decimated where even that
    one is much finer), so a view of a whole slide costs about as much as one of a few cells."""
    full = levels[0].shape[:2]
    step = float(np.linalg.svd(np.asarray(out_to_full, float)[:2, :2], compute_uv=False).min())
    index = 0
    for i, level in enumerate(levels):
        if full[0] / level.shape[0] <= step * 1.01:
            index = i
    level = levels[index]
    out_to_level = transforms.compose(out_to_full, transforms.resample_matrix(full, level.shape))
    size = full[0] / level.shape[0]
    rows, cols = (int(v) for v in shape[:2])
    corners = transforms.apply_to_points(out_to_level, [[-0.5, -0.5], [cols - 0.5, -0.5], [-0.5, rows - 0.5],
                                                        [cols - 0.5, rows - 0.5]])
    c0, r0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 2, 0)
    c1, r1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 3, [level.shape[1], level.shape[0]])
    channels = (3,) if len(level.shape) == 3 and level.shape[2] in (3, 4) else ()
    if r1 - r0 < 2 or c1 - c0 < 2:
        return np.full((rows, cols, *channels), fill, np.float32)
    k = max(1, int(step / size))  # decimation of a level still ≥ 2× finer than the output
    crop = to_float(np.asarray(level[r0:r1:k, c0:c1:k]))
    level_to_crop = transforms.compose(transforms.translation(-c0, -r0), transforms.scaling(1.0 / k))
    return transforms.sample_bilinear(crop, transforms.compose(out_to_level, level_to_crop), (rows, cols), fill)


def region_view(name: str, parameter: float, grid: Grid, fixed_levels, moving_levels, matrix: np.ndarray) -> np.ndarray:
    """View ``name`` of the fixed image and the moving image (pyramids, finest first) on ``grid``; ``matrix``:
    moving → fixed level-0 pixels ``(x, y)``; ``parameter``: the checkerboard's tile in fixed level-0 pixels (tiles
    anchored to the image) or the swipe curtain's position as a fraction of the grid's width."""
    to_fixed = grid.to_fixed_xy()
    fixed = sample_region(fixed_levels, to_fixed, grid.shape)
    warped = sample_region(moving_levels, transforms.compose(to_fixed, transforms.invert(matrix)), grid.shape)
    return view(name, fixed, warped, parameter, grid.origin, grid.step)
