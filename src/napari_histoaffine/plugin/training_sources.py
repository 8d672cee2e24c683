"""napari layers as a training data source (no Qt): what the Fine-tune dock hands to the training package."""
from __future__ import annotations

import numpy as np

from ..training.data import DataSource, SectionArrays
from .layer_transforms import layer_matrices, pair_arrays, points_between, rowcol_to_xy


def landmarks_xy(points, image) -> np.ndarray:
    """A Points layer's landmarks as ``(x, y)`` level-0 pixels of ``image`` (through the layers' own scale/translate;
    the ``affine`` that registration sets on a moving layer is ignored)."""
    return rowcol_to_xy(points_between(points.data, layer_matrices(points)[0], layer_matrices(image)[0]))


def layer_pair_source(moving, fixed, moving_points, fixed_points, working_size: int) -> DataSource:
    """Two image layers (and their landmark layers, when both are given) as a ``"layers"`` data source: the
    pixels at the level that fits ``working_size``, read now (napari's data belong to the main thread)."""
    (moving_array, moving_full), (fixed_array, fixed_full) = pair_arrays((moving, fixed), working_size)
    with_landmarks = moving_points is not None and fixed_points is not None
    return DataSource("layers", sections=SectionArrays(
        f"{moving.name} → {fixed.name}", moving_array, fixed_array, (moving_full, fixed_full),
        landmarks_xy(moving_points, moving) if with_landmarks else None,
        landmarks_xy(fixed_points, fixed) if with_landmarks else None))
