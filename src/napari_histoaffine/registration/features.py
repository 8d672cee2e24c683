"""Structure features shared by the pose search and the refinement: downsampled pairs and their feature pyramid.

Scores use tissue structure (the lightly smoothed inverted image and its gradient magnitude), not one
blurred intensity image, because stains are not linearly related.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import transforms
from .preprocess import PreparedImage
from .similarity import gradient_magnitude, ncc, smooth


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))[None, None]


def downsample(image: np.ndarray, long_side: int) -> tuple[torch.Tensor, np.ndarray]:
    """Anti-aliased ``(1, 1, h, w)`` tensor with the given long side, and the matrix input → small pixels."""
    factor = min(1.0, long_side / max(image.shape))
    shape = (max(8, round(image.shape[0] * factor)), max(8, round(image.shape[1] * factor)))
    small = _to_tensor(image)
    if shape != small.shape[-2:]:
        small = F.interpolate(small, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return small, transforms.resample_matrix(image.shape, shape)


def downsample_pair(moving: np.ndarray, fixed: np.ndarray, long_side: int):
    """Both images at one common factor that gives the larger of them ``long_side``.

    Returns ``(moving_small, moving_to_small, fixed_small, fixed_to_small)`` as from :func:`downsample`.
    """
    factor = long_side / max(max(moving.shape), max(fixed.shape))
    moving_small, moving_to_small = downsample(moving, round(max(moving.shape) * factor))
    fixed_small, fixed_to_small = downsample(fixed, round(max(fixed.shape) * factor))
    return moving_small, moving_to_small, fixed_small, fixed_to_small


def small_theta(matrix: np.ndarray, moving_to_small: np.ndarray, moving_shape, fixed_to_small: np.ndarray,
                fixed_shape) -> np.ndarray:
    """Theta, between the downsampled grids of :func:`downsample_pair`, of a working moving → fixed matrix.

    A stack of matrices gives a stack of thetas.
    """
    small = transforms.compose(transforms.invert(moving_to_small), matrix, fixed_to_small)
    return transforms.to_theta(small, moving_shape, fixed_shape)


def structure_features(image: torch.Tensor) -> torch.Tensor:
    """Structure channels of ``(N, 1, H, W)`` images: lightly smoothed intensity and its edges."""
    edges = smooth(gradient_magnitude(smooth(image, 1.0)), 1.0)
    channels = [smooth(image, 0.5), edges]
    return torch.cat([c / c.flatten(1).std(1).clamp_min(1e-6).view(-1, 1, 1, 1) for c in channels], dim=1)


class FeatureLevel:
    """Structure features of a prepared pair at one scale, and its working matrix ↔ theta conversions."""

    def __init__(self, moving: PreparedImage, fixed: PreparedImage, long_side: int):
        m_small, self.m_to_small, f_small, self.f_to_small = downsample_pair(moving.image, fixed.image, long_side)
        self.moving = structure_features(m_small)
        self.fixed = structure_features(f_small)
        self.m_shape, self.f_shape = m_small.shape[-2:], f_small.shape[-2:]

    def thetas(self, matrices) -> torch.Tensor:
        """``(N, 2, 3)`` float32 thetas, on this level's grids, of working moving → fixed matrices."""
        thetas = small_theta(np.asarray(matrices, float), self.m_to_small, self.m_shape, self.f_to_small, self.f_shape)
        return torch.from_numpy(thetas).float()

    def matrix(self, theta: np.ndarray) -> np.ndarray:
        """Working moving → fixed matrix of a theta on this level's grids."""
        small = transforms.from_theta(theta, self.m_shape, self.f_shape)
        return transforms.compose(self.m_to_small, small, transforms.invert(self.f_to_small))

    def similarity(self, theta: torch.Tensor) -> torch.Tensor:
        """Structure NCC of the pair under each of a batch of thetas."""
        warped = transforms.warp_tensor(self.moving, theta, self.f_shape)
        return ncc(warped, self.fixed.expand_as(warped))


class StructurePyramid:
    """The feature levels of one prepared pair, each built once when first asked for, shared by every stage."""

    def __init__(self, moving: PreparedImage, fixed: PreparedImage):
        self.moving, self.fixed = moving, fixed
        self._levels: dict[int, FeatureLevel] = {}

    @torch.inference_mode()
    def level(self, long_side: int) -> FeatureLevel:
        if long_side not in self._levels:
            self._levels[long_side] = FeatureLevel(self.moving, self.fixed, long_side)
        return self._levels[long_side]

    @torch.inference_mode()
    def similarity(self, matrices: list[np.ndarray], long_side: int) -> list[float]:
        """Structure NCC of the pair under each working moving → fixed matrix, at the given scale."""
        level = self.level(long_side)
        return [float(s) for s in level.similarity(level.thetas(matrices))]
