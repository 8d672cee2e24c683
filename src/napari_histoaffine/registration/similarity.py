"""Similarity measures on torch tensors, batched over the first axis."""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def ncc(a, b, weight=None, eps: float = 1e-8):
    """Global normalised cross-correlation of ``(N, C, H, W)`` tensors or arrays, one value per batch item.

    ``weight`` (broadcastable to ``a``) restricts and weighs the pixels taken into account; ``b``
    may be one image for the whole batch. Raw weighted moments, centred afterwards: a third of
    the passes over the pixels of centring them first. Torch tensors (a differentiated loss) or
    NumPy arrays (scores that are only compared: a fraction of torch's cost per operation).
    """
    xp = torch if isinstance(a, torch.Tensor) else np
    dims = tuple(range(1, a.ndim))
    if weight is None:
        weight = xp.ones_like(a[:1, :1])
    total = xp.broadcast_to(weight, a.shape).sum(dims).clip(min=eps)
    weighted_a, weighted_b = a * weight, b * weight
    sum_a, sum_b = weighted_a.sum(dims), weighted_b.sum(dims)
    squares_a, squares_b = (weighted_a * a).sum(dims), (weighted_b * b).sum(dims)
    cov = (weighted_a * b).sum(dims) - sum_a * sum_b / total
    var_a = squares_a - sum_a * sum_a / total
    var_b = squares_b - sum_b * sum_b / total
    # a variance within rounding of the raw moment is none: a flat image correlates with nothing
    flat = (var_a <= 1e-5 * squares_a) | (var_b <= 1e-5 * squares_b)
    return xp.where(flat, 0.0, cov / xp.sqrt((var_a * var_b).clip(min=0) + eps))


@functools.lru_cache(maxsize=32)
def _gaussian_weights(sigma: float) -> list[float]:
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).tolist()


@functools.lru_cache(maxsize=128)
def _gaussian_band(size: int, sigma: float) -> torch.Tensor:
    """``(size, size)`` symmetric matrix that blurs a vector of ``size`` samples (zeros beyond its ends)."""
    weights = torch.tensor(_gaussian_weights(sigma))
    radius = len(weights) // 2
    index = torch.arange(size)
    distance = index.view(1, -1) - index.view(-1, 1)
    with torch.inference_mode(False):  # cached: must serve autograd later even when first built during inference
        return torch.where(distance.abs() <= radius, weights[(distance + radius).clamp(0, 2 * radius)], 0.0)


_BAND_LIMIT = 128  # up to this many samples a band-matrix product is cheapest; beyond, a sum of shifted views


def _blur_last_axis(images: torch.Tensor, sigma: float) -> torch.Tensor:
    size = images.shape[-1]
    if size <= _BAND_LIMIT:
        return images @ _gaussian_band(size, sigma).to(images.dtype)
    weights = _gaussian_weights(sigma)
    radius = len(weights) // 2
    padded = F.pad(images, (radius, radius))
    return sum(weight * padded[..., i:i + size] for i, weight in enumerate(weights))


def blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of one float32 ``(H, W)`` image by OpenCV's separable filter, zero beyond its edges.

    The kernel of :func:`smooth` (3 σ either side, normalised).
    """
    weights = np.asarray(_gaussian_weights(float(sigma)), np.float32)
    return cv2.sepFilter2D(plane, -1, weights, weights, borderType=cv2.BORDER_CONSTANT)


def smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` images (zero padding: background is 0).

    Where no gradient has to flow (a training pair's fixed image), :func:`blur` blurs each plane, up to
    8× faster than torch at the sizes registration uses; a loss that is differentiated blurs by band
    matrices (small sides) or shifted sums, not convolutions: for these small single-channel images
    oneDNN's kernels are several times slower on the CPU and re-plan for every image size.
    """
    if sigma <= 0:
        return images
    if images.dtype == torch.float32 and images.device.type == "cpu" and not (
            images.requires_grad and torch.is_grad_enabled()):
        planes = images.contiguous().reshape(-1, *images.shape[-2:]).numpy()
        return torch.from_numpy(np.stack([blur(plane, sigma) for plane in planes])).view(images.shape)
    return _blur_last_axis(_blur_last_axis(images, float(sigma)).transpose(-1, -2), float(sigma)).transpose(-1, -2)


def central_differences(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``I(x+1) − I(x−1)`` along x and along y of ``(..., H, W)`` images (twice the derivative), 0 at the border."""
    gx, gy = np.zeros_like(images), np.zeros_like(images)
    np.subtract(images[..., :, 2:], images[..., :, :-2], out=gx[..., :, 1:-1])
    np.subtract(images[..., 2:, :], images[..., :-2, :], out=gy[..., 1:-1, :])
    return gx, gy
