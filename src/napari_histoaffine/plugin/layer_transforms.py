"""napari layer geometry for registration results (numpy only; no Qt).

A registration matrix ``R`` (``(x, y)`` order, moving → fixed full-resolution pixels, see
:mod:`napari_histoaffine.transforms`) is shown in napari by giving the moving layer the
``affine`` (napari's ``physical2world`` transform, ``(row, col)`` order)::

    affine = W_fixed @ R_rc @ inv(P_moving)

where ``W_fixed`` is the fixed layer's whole data → world transform, ``R_rc`` is ``R`` in
napari's order and ``P_moving`` the moving layer's own scale/translate/rotate/shear part. A
moving data point ``d`` then lands in world at ``affine @ P_moving @ d = W_fixed @ R_rc @ d``,
i.e. exactly where the fixed layer shows the pixel ``R`` maps ``d`` to. Data are never touched.
"""
from __future__ import annotations

import numpy as np

from .. import transforms
from ..errors import InputError


def layer_matrices(layer) -> tuple[np.ndarray, np.ndarray]:
    """``(data2physical, physical2world)`` of a 2-D napari layer as 3×3 ``(row, col)`` matrices."""
    from napari.utils.transforms import CompositeAffine

    own = CompositeAffine(scale=layer.scale, translate=layer.translate, rotate=layer.rotate,
                          shear=layer.shear, ndim=layer.ndim)
    return own.affine_matrix, np.asarray(layer.affine.affine_matrix, float)


def data_to_world_matrix(layer) -> np.ndarray:
    """The layer's whole data → world transform (3×3, ``(row, col)``)."""
    own, extra = layer_matrices(layer)
    return extra @ own


def moving_layer_affine(registration_xy, fixed_data_to_world_rc, moving_data_to_physical_rc) -> np.ndarray:
    """The ``affine`` for the moving layer that shows it registered onto the fixed layer (see module doc)."""
    r_rc = transforms.xy_to_rowcol(registration_xy)
    return np.asarray(fixed_data_to_world_rc, float) @ r_rc @ np.linalg.inv(moving_data_to_physical_rc)


def map_rowcol(matrix_rc, points_rc) -> np.ndarray:
    """Apply a 3×3 ``(row, col)`` matrix to ``(n, 2)`` napari points."""
    return transforms.apply_to_points(matrix_rc, points_rc)


def points_between(points_rc, from_data_to_world_rc, to_data_to_world_rc) -> np.ndarray:
    """Data coordinates of one layer → data coordinates of another, through world."""
    return map_rowcol(np.linalg.inv(to_data_to_world_rc) @ np.asarray(from_data_to_world_rc, float), points_rc)


def rowcol_to_xy(points_rc) -> np.ndarray:
    """napari ``(row, col)`` points → ``(x, y)`` points (and back: the swap is its own inverse)."""
    return np.asarray(points_rc, float).reshape(-1, 2)[:, ::-1].copy()


def common_levels(level_shapes, level0_pixel_sizes, working_size: int) -> list[tuple[int, float]]:
    """For each image, the pyramid level to read and the factor that brings it to one common pixel size.

    ``level_shapes[k]`` are image k's level shapes (level 0 first), ``level0_pixel_sizes[k]`` the world
    size of its level-0 pixel (a napari layer's scale). The common pixel size makes the image that is
    larger in the world ``working_size`` pixels long (or, for small images, is the coarser of the
    two level-0 pixels); each image reads its coarsest level that is still at least that fine and is
    then resampled by the returned factor (≤ 1) to exactly that size, so a pyramid and a single large
    array, or layers of different scales, meet at one pixel size.
    """
    extents = [max(shapes[0][0], shapes[0][1]) * size for shapes, size in zip(level_shapes, level0_pixel_sizes)]
    # world size of a working pixel; never finer than the coarser level 0 (nothing is upsampled)
    target = max(max(extents) / working_size, max(level0_pixel_sizes))
    chosen = []
    for shapes, size in zip(level_shapes, level0_pixel_sizes):
        pixel = [size * max(shapes[0][:2]) / max(s[:2]) for s in shapes]  # world size of each level's pixel
        fine_enough = [i for i, p in enumerate(pixel) if p <= target * 1.0001]
        index = max(fine_enough, key=lambda i: pixel[i], default=0)
        chosen.append((index, pixel[index] / target))
    return chosen


def fit_affine(moving_xy, fixed_xy) -> np.ndarray:
    """Least-squares affine (moving → fixed, ``(x, y)``) from ≥ 3 non-collinear point pairs."""
    src = np.asarray(moving_xy, float).reshape(-1, 2)
    dst = np.asarray(fixed_xy, float).reshape(-1, 2)
    if len(src) != len(dst):
        raise InputError(f"landmark sets differ in length: {len(src)} moving vs {len(dst)} fixed landmarks")
    design = np.hstack([src, np.ones((len(src), 1))])
    if len(src) < 3 or np.linalg.matrix_rank(design) < 3:
        raise InputError("refitting an affine needs at least 3 landmark pairs that are not on one line")
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    return np.vstack([solution.T, [0.0, 0.0, 1.0]])


def _checked_pixels(layer, array: np.ndarray) -> np.ndarray:
    values = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    if array.size == 0 or min(array.shape[:2]) < 2:
        raise InputError(f"Image layer '{layer.name}' is empty or too small: shape {array.shape}")
    if values.size == 0:
        raise InputError(f"Image layer '{layer.name}' has no finite pixels (NaN or inf everywhere)")
    if not np.ptp(values) > 0:
        raise InputError(f"Image layer '{layer.name}' has a single value everywhere: nothing to register")
    return array


def layer_levels(layer) -> list:
    """An image layer's pixels, finest level first."""
    return list(layer.data) if layer.multiscale else [layer.data]


def pair_arrays(layers, working_size: int) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Pixels of each image layer at one common pixel size (levels chosen jointly, layer scales
    included), and each layer's level-0 (rows, cols) the matrix refers to."""
    from ..registration.preprocess import resample  # torch only once a registration starts

    pyramids = [layer_levels(layer) for layer in layers]
    pixel_sizes = [float(np.sqrt(abs(np.prod(layer.scale[-2:])))) for layer in layers]
    choice = common_levels([[level.shape for level in levels] for levels in pyramids], pixel_sizes, working_size)
    arrays = []
    for layer, levels, (index, factor) in zip(layers, pyramids, choice):
        array = _checked_pixels(layer, np.asarray(levels[index]))
        if abs(factor - 1.0) > 1e-3:
            array, _ = resample(array, factor)
        arrays.append((array, tuple(int(v) for v in levels[0].shape[:2])))
    return arrays


class SavedLooks:
    """Each changed layer's affine and opacity before its first change; :meth:`restore` puts them back exactly."""

    def __init__(self):
        self._saved: dict = {}  # layer.unique_id → (layer, affine, opacity)

    def keep(self, layer) -> None:
        """Remember ``layer``'s look unless it was kept already (then the kept one is the original)."""
        self._saved.setdefault(layer.unique_id, (layer, np.array(layer.affine.affine_matrix), layer.opacity))

    def data_to_world(self, layer) -> np.ndarray:
        """``layer``'s data → world matrix with its original affine."""
        saved = self._saved.get(layer.unique_id)
        affine = saved[1] if saved is not None else np.asarray(layer.affine.affine_matrix, float)
        return affine @ layer_matrices(layer)[0]

    def restore(self) -> None:
        for layer, affine, opacity in self._saved.values():
            layer.affine = affine
            layer.opacity = opacity
        self._saved.clear()
