"""The small elastic distortion that makes each section of a specimen differ from the others.

Real consecutive sections are stretched and bent a little by cutting and mounting; the distortion
here is smooth and a few pixels at most, so that an affine transform still explains the landmarks
to well under one percent of the image diagonal, and it maps landmarks exactly both ways.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_SHIFT = 0.004  # largest displacement, as a fraction of the image diagonal


@dataclass(frozen=True)
class Deformation:
    """Section pixel ``(x, y)`` shows the specimen at ``(x + dx[y, x], y + dy[y, x])`` (float32 maps)."""

    dx: np.ndarray
    dy: np.ndarray

    def warp(self, image: np.ndarray) -> np.ndarray:
        """A specimen-grid image (``(h, w)`` or ``(h, w, c)`` float32) as the section shows it (what
        lies beyond the specimen's edge is taken to continue it)."""
        h, w = self.dx.shape
        grid_y, grid_x = np.mgrid[0:h, 0:w].astype(np.float32)
        return cv2.remap(image, grid_x + self.dx, grid_y + self.dy, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def to_specimen(self, points: np.ndarray) -> np.ndarray:
        """Section points ``(n, 2)`` ``(x, y)`` to the specimen points they show."""
        points = np.asarray(points, np.float64).reshape(-1, 2)
        return points + np.stack([_bilinear(d, points) for d in (self.dx, self.dy)], axis=1)

    def to_section(self, points: np.ndarray, iterations: int = 30) -> np.ndarray:
        """Specimen points ``(n, 2)`` ``(x, y)`` to where the section shows them (the exact inverse of
        :meth:`to_specimen`, by fixed-point iteration: the displacement changes slowly)."""
        target = np.asarray(points, np.float64).reshape(-1, 2)
        found = target.copy()
        for _ in range(iterations):
            found = target - (self.to_specimen(found) - found)
        return found


def _bilinear(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``field`` at ``(x, y)`` points, interpolated bilinearly between pixel centres (edge values beyond)."""
    h, w = field.shape
    x, y = np.clip(points[:, 0], 0, w - 1), np.clip(points[:, 1], 0, h - 1)
    left, top = np.minimum(x.astype(int), w - 2), np.minimum(y.astype(int), h - 2)
    fx, fy = x - left, y - top
    return ((field[top, left] * (1 - fx) + field[top, left + 1] * fx) * (1 - fy)
            + (field[top + 1, left] * (1 - fx) + field[top + 1, left + 1] * fx) * fy)


def random_deformation(shape, rng: np.random.Generator, max_shift: float | None = None) -> Deformation:
    """A random smooth displacement field of at most ``max_shift`` px (default: a random fraction of
    :data:`MAX_SHIFT` of the diagonal), varying over a quarter to a sixth of the image."""
    h, w = shape
    if max_shift is None:
        max_shift = rng.uniform(0.4, 1.0) * MAX_SHIFT * np.hypot(h, w)
    nodes = int(rng.integers(4, 7))
    grid = (max(2, round(nodes * h / max(h, w))), max(2, round(nodes * w / max(h, w))))
    coarse = rng.standard_normal((2, *grid)).astype(np.float32)
    dx, dy = (cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in coarse)
    scale = max_shift / max(float(np.sqrt(dx ** 2 + dy ** 2).max()), 1e-6)
    return Deformation((dx * scale).astype(np.float32), (dy * scale).astype(np.float32))
