"""Similarity measures on torch tensors, batched over the first axis."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def ncc(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Global normalised cross-correlation of ``(N, C, H, W)`` tensors, one value per batch item.

    ``weight`` (broadcastable to ``a``) restricts and weighs the pixels taken into account.
    """
    if weight is None:
        weight = torch.ones_like(a[:1])
    weight = weight.expand_as(a)
    dims = tuple(range(1, a.ndim))
    total = weight.sum(dims).clamp_min(eps)
    mean_a = (weight * a).sum(dims) / total
    mean_b = (weight * b).sum(dims) / total
    shape = (-1,) + (1,) * (a.ndim - 1)
    da = a - mean_a.view(shape)
    db = b - mean_b.view(shape)
    cov = (weight * da * db).sum(dims)
    var_a = (weight * da * da).sum(dims)
    var_b = (weight * db * db).sum(dims)
    return cov / torch.sqrt(var_a * var_b + eps)


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


def smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` images (zero padding: background is 0).

    Not a convolution: for the small single-channel images of registration oneDNN's kernels are
    several times slower on the CPU and re-plan for every image size.
    """
    if sigma <= 0:
        return images
    return _blur_last_axis(_blur_last_axis(images, float(sigma)).transpose(-1, -2), float(sigma)).transpose(-1, -2)


def central_differences(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``I(x+1) − I(x−1)`` along x and along y of ``(N, C, H, W)`` images (twice the derivative), 0 at the border."""
    gx = F.pad(images[..., :, 2:] - images[..., :, :-2], (1, 1, 0, 0))
    gy = F.pad(images[..., 2:, :] - images[..., :-2, :], (0, 0, 1, 1))
    return gx, gy


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Central-difference gradient magnitude of ``(N, 1, H, W)`` images."""
    gx, gy = central_differences(images)
    return torch.sqrt(gx * gx + gy * gy + 1e-12)
