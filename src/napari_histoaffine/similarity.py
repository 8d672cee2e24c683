"""Similarity measures on torch tensors, batched over the first axis."""
from __future__ import annotations

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


def smooth(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` images (zero padding: background is 0)."""
    if sigma <= 0:
        return images
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    kx = kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    out = F.conv2d(images, kx, padding=(0, radius), groups=c)
    return F.conv2d(out, ky, padding=(radius, 0), groups=c)


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Central-difference gradient magnitude of ``(N, 1, H, W)`` images."""
    gx = F.pad(images[..., :, 2:] - images[..., :, :-2], (1, 1, 0, 0))
    gy = F.pad(images[..., 2:, :] - images[..., :-2, :], (0, 0, 1, 1))
    return torch.sqrt(gx * gx + gy * gy + 1e-12)
