"""Where a specimen's tissue is and which structure family fills which part of it.

Outlines come in the kinds a registration method must cope with: an irregular blob (whose shape
gives the pose away), a near-symmetric disc or ellipse and a full-frame crop (whose outline says
nothing about the pose), and several separate pieces.
"""
from __future__ import annotations

import cv2
import numpy as np

from .primitives import blob, fill, noise

OUTLINE_KINDS = {"blob": 0.5, "ellipse": 0.15, "full": 0.15, "pieces": 0.2}


def make_outline(shape, rng: np.random.Generator, unit: float) -> tuple[np.ndarray, str]:
    """A random tissue outline as a boolean mask, and its kind (a key of :data:`OUTLINE_KINDS`)."""
    kind = str(rng.choice(list(OUTLINE_KINDS), p=list(OUTLINE_KINDS.values())))
    h, w = shape
    if kind == "full":
        return np.ones(shape, bool), kind
    mask = np.zeros(shape, np.float32)
    if kind == "pieces":
        count = int(rng.integers(2, 4))
        for slot in range(count):  # side by side along the long side, each in its own slot: they stay apart
            along = (slot + 0.5) / count
            centre = np.array([w * along, h * rng.uniform(0.4, 0.6)]) if w >= h else \
                np.array([w * rng.uniform(0.4, 0.6), h * along])
            size = min(max(w, h) / count, min(w, h)) * rng.uniform(0.3, 0.4)
            fill(mask, _clipped(blob(rng, centre, size, 0.35, rng.uniform(1, 1.8)), shape), 1.0)
    else:
        long_axis, short_axis = max(w, h), min(w, h)
        if kind == "blob":
            a = 0.46 * long_axis * rng.uniform(0.75, 1.0)
            b = min(a / rng.uniform(1, 2.2), 0.46 * short_axis * rng.uniform(0.75, 1.0))
            centre = np.array([w, h]) * (0.5 + rng.normal(0, 0.03, 2))
            roughness = rng.uniform(0.25, 0.6)
        else:
            b = 0.46 * short_axis * rng.uniform(0.8, 1.0)
            a = b * (1.0 if rng.random() < 0.5 else rng.uniform(1, 1.35))
            centre, roughness = np.array([w, h]) / 2, 0.01
        angle = (0 if w >= h else np.pi / 2) + rng.normal(0, 0.25 if kind == "blob" else 0.05)
        polygon = blob(rng, centre, np.sqrt(a * b), roughness, a / b, angle)
        fill(mask, _clipped(polygon, shape), 1.0)
    ragged = cv2.GaussianBlur(mask, (0, 0), 2 * unit) + 0.12 * noise(shape, rng, 3 * unit)
    return ragged > 0.5, kind


def _clipped(polygon: np.ndarray, shape) -> np.ndarray:
    """Shrink a polygon towards its centre until it keeps a margin of 3 % inside the image."""
    h, w = shape
    centre = polygon.mean(axis=0)
    margin = 0.03 * np.array([w, h])
    reach = np.abs(polygon - centre).max(axis=0)
    room = np.minimum(centre - margin, np.array([w, h]) - margin - centre)
    return centre + (polygon - centre) * min(1.0, *(room / np.maximum(reach, 1e-6)))


def region_weights(shape, rng: np.random.Generator, count: int, unit: float) -> np.ndarray:
    """A random smooth partition of the grid into ``count`` family regions plus generic stroma.

    Returns ``(count + 1, h, w)`` float32 weights that sum to 1 at every pixel (the last one is the
    stroma's); they change from one region to the next over a few pixels.
    """
    scale = rng.uniform(180, 320) * unit
    fields = np.stack([noise(shape, rng, scale) + 0.12 * noise(shape, rng, 5 * unit) for _ in range(count + 1)])
    fields[-1] -= rng.uniform(0.6, 1.8)
    fields *= 25
    fields -= fields.max(axis=0)
    weights = np.exp(fields)
    return (weights / weights.sum(axis=0)).astype(np.float32)
