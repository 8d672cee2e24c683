"""Iterative affine refinement: gradient descent on the structure NCC, coarse to fine.

Several starting poses are refined side by side in one batch at the coarsest scale; the pose
with the best final similarity wins and alone goes on to the finer scales. This lets the
refinement, not the blurred rotation score, decide between near-symmetric candidates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import transforms
from .preprocess import PreparedImage
from .rotation import downsample_pair, structure_features
from .similarity import ncc

DEFAULT_SCALES = ((96, 25, 0.02), (192, 15, 0.005))


@dataclass(frozen=True)
class Refined:
    """Refinement outcome: working-resolution moving → fixed matrix, its similarity, and which start won."""

    matrix: np.ndarray
    similarity: float
    start_index: int
    start_similarities: list[float]


class _Level:
    """Feature images of a pair at one scale and the conversions between working and theta coordinates."""

    def __init__(self, moving: PreparedImage, fixed: PreparedImage, long_side: int):
        m_small, self.m_to_small, f_small, self.f_to_small = downsample_pair(moving.image, fixed.image, long_side)
        self.moving = structure_features(m_small)
        self.fixed = structure_features(f_small)
        self.m_shape, self.f_shape = m_small.shape[-2:], f_small.shape[-2:]

    def theta(self, matrix: np.ndarray) -> np.ndarray:
        small = transforms.compose(transforms.invert(self.m_to_small), matrix, self.f_to_small)
        return transforms.to_theta(small, self.m_shape, self.f_shape)

    def matrix(self, theta: np.ndarray) -> np.ndarray:
        small = transforms.from_theta(theta, self.m_shape, self.f_shape)
        return transforms.compose(self.m_to_small, small, transforms.invert(self.f_to_small))

    def similarity(self, theta: torch.Tensor) -> torch.Tensor:
        warped = transforms.warp_tensor(self.moving, theta, self.f_shape)
        return ncc(warped, self.fixed.expand_as(warped))


def _optimise(level: _Level, theta: torch.Tensor, iterations: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    theta = theta.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([theta], lr=lr)
    for _ in range(iterations):
        optimiser.zero_grad()
        loss = -level.similarity(theta).sum()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return theta.detach(), level.similarity(theta)


def refine_affine(moving: PreparedImage, fixed: PreparedImage, starts: list[np.ndarray],
                  scales=DEFAULT_SCALES) -> Refined:
    """Refine each start (working moving → fixed matrix) at the coarsest scale, the best one further.

    ``scales`` lists ``(long side in px, iterations, learning rate)`` from coarse to fine.
    """
    (size, iterations, lr), *finer = scales
    level = _Level(moving, fixed, size)
    thetas = torch.tensor(np.stack([level.theta(m) for m in starts]), dtype=torch.float32)
    thetas, scores = _optimise(level, thetas, iterations, lr)
    best = int(torch.argmax(scores))
    matrix = level.matrix(thetas[best].numpy())
    similarity = float(scores[best])
    for size, iterations, lr in finer:
        level = _Level(moving, fixed, size)
        theta = torch.tensor(level.theta(matrix), dtype=torch.float32)[None]
        theta, score = _optimise(level, theta, iterations, lr)
        matrix, similarity = level.matrix(theta[0].numpy()), float(score[0])
    return Refined(matrix, similarity, best, [float(s) for s in scores])


def structure_similarity(moving: PreparedImage, fixed: PreparedImage, matrices: list[np.ndarray],
                         long_side: int = 256) -> list[float]:
    """Structure NCC of the pair under each working moving → fixed matrix (the refinement's own measure)."""
    level = _Level(moving, fixed, long_side)
    thetas = torch.tensor(np.stack([level.theta(m) for m in matrices]), dtype=torch.float32)
    with torch.inference_mode():
        return [float(s) for s in level.similarity(thetas)]
