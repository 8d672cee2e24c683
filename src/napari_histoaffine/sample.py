"""A synthetic registration pair from scikit-image's ``ihc.png``, with exact landmarks.

The fixed image is the IHC section itself. The moving image is a stain-changed copy (the
haematoxylin, eosin and DAB channels of ``skimage.color.rgb2hed`` rescaled) warped by a known
affine (rotation, anisotropic scale, shear, shift) onto a grid of a different size. Landmarks are
a grid of fixed points and their exact images in the moving section, so any registration can be
scored against the truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import transforms

STAIN_GAINS = (1.4, 1.2, 0.7)  # haematoxylin, eosin, DAB
MOVING_SHAPE = (480, 560)


@dataclass(frozen=True)
class SamplePair:
    """Images (uint8 RGB), landmarks ``(n, 2)`` in ``(x, y)`` and the true moving → fixed matrix."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_landmarks: np.ndarray
    moving_landmarks: np.ndarray
    matrix: np.ndarray


def true_matrix(fixed_shape=(512, 512), moving_shape=MOVING_SHAPE) -> np.ndarray:
    """The known affine: moving pixels → fixed pixels."""
    fixed_centre = ((fixed_shape[1] - 1) / 2, (fixed_shape[0] - 1) / 2)
    moving_centre = ((moving_shape[1] - 1) / 2, (moving_shape[0] - 1) / 2)
    shear = np.array([[1.0, 0.08, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    fixed_to_moving = transforms.compose(
        transforms.translation(-fixed_centre[0], -fixed_centre[1]), shear, transforms.scaling(0.92, 0.86),
        transforms.rotation(25.0), transforms.translation(moving_centre[0] + 12.0, moving_centre[1] - 9.0))
    return transforms.invert(fixed_to_moving)


def restain(rgb: np.ndarray, gains=STAIN_GAINS) -> np.ndarray:
    """Change the stain: scale the HED channels, back to RGB in [0, 1]."""
    from skimage.color import hed2rgb, rgb2hed

    return np.clip(hed2rgb(rgb2hed(rgb) * np.asarray(gains)), 0.0, 1.0)


def make_pair(grid: int = 6) -> SamplePair:
    """Build the pair; ``grid`` × ``grid`` landmarks over the central part of the fixed image."""
    from skimage.data import immunohistochemistry

    fixed = immunohistochemistry()
    matrix = true_matrix(fixed.shape, MOVING_SHAPE)
    moving = transforms.warp_image(restain(fixed), transforms.invert(matrix), MOVING_SHAPE, cval=1.0)
    moving = np.round(np.clip(moving, 0.0, 1.0) * 255).astype(np.uint8)
    rows, cols = fixed.shape[:2]
    ys, xs = np.meshgrid(np.linspace(0.2, 0.8, grid) * (rows - 1), np.linspace(0.2, 0.8, grid) * (cols - 1), indexing="ij")
    fixed_xy = np.column_stack([xs.ravel(), ys.ravel()])
    moving_xy = transforms.apply_to_points(transforms.invert(matrix), fixed_xy)
    return SamplePair(fixed, moving, fixed_xy, moving_xy, matrix)
