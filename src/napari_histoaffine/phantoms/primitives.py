"""Drawing primitives shared by the structure families, and the :class:`Structure` a family returns.

Smooth random fields, jittered point sets, Voronoi networks, random curves and perturbed blobs are
what every organ-like pattern here is built from; keeping them in one place keeps the families short
and makes them share one notion of scale (``unit``: pixels per nominal pixel of a 900-px image).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LAYERS = ("stroma", "cells", "walls", "collagen", "marker", "lumen")
"""What a family draws: connective tissue, cellularity (where nuclei are), membranes and epithelial
walls, dense collagen (septa, capsules), a special structure (the target of a marker stain) and
lumen (no tissue: glass)."""

SUBPIXEL = 4  # fractional bits of the coordinates handed to OpenCV's drawing functions


@dataclass
class Structure:
    """The layers one family drew on the specimen grid, and its landmark candidates.

    ``layers`` holds float32 maps in [0, 1] for the names in :data:`LAYERS`; ``candidates`` is an
    ``(n, 2)`` array of ``(x, y)`` points at distinctive places (gland centres, branch points ...).
    """

    layers: dict[str, np.ndarray]
    candidates: np.ndarray


def new_layers(shape) -> dict[str, np.ndarray]:
    return {name: np.zeros(shape, np.float32) for name in LAYERS}


def noise(shape, rng: np.random.Generator, scale: float) -> np.ndarray:
    """A smooth random field of zero mean and unit standard deviation, varying over ``scale`` px."""
    h, w = shape
    if scale < 2:
        field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), max(scale, 0.5))
    else:
        coarse = rng.standard_normal((int(np.ceil(h / scale)) + 2, int(np.ceil(w / scale)) + 2)).astype(np.float32)
        field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / max(float(field.std()), 1e-6)


def jittered_points(shape, rng: np.random.Generator, spacing: float, jitter: float = 0.4,
                    keep: float = 1.0) -> np.ndarray:
    """Points ``(x, y)`` on a jittered hexagonal grid of ``spacing`` px, a random ``keep`` fraction of them."""
    h, w = shape
    rows = np.arange(-spacing / 2, h + spacing, spacing * 0.866)
    gx, gy = np.meshgrid(np.arange(-spacing / 2, w + spacing, spacing), rows)
    gx = gx + (np.arange(len(rows)) % 2)[:, None] * spacing / 2
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    grid += rng.uniform(-jitter, jitter, grid.shape) * spacing
    grid = grid[(grid[:, 0] >= 0) & (grid[:, 0] < w) & (grid[:, 1] >= 0) & (grid[:, 1] < h)]
    return grid[rng.random(len(grid)) < keep]


def pixel_index(points: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the pixels nearest to ``(x, y)`` points, clipped to the grid."""
    rows = np.clip(np.round(points[:, 1]).astype(int), 0, shape[0] - 1)
    cols = np.clip(np.round(points[:, 0]).astype(int), 0, shape[1] - 1)
    return rows, cols


def nearest(shape, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance of every pixel to the nearest of ``points``, and a label naming that point's pixel."""
    seeds = np.ones(shape, np.uint8)
    seeds[pixel_index(points, shape)] = 0
    return cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)


def voronoi(shape, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Voronoi cells of ``points`` on the grid.

    Returns the cell label of every pixel, the distance of every pixel to the nearest cell border,
    and the ``(x, y)`` points where three or more cells meet (one per junction).
    """
    labels = nearest(shape, points)[1]
    a, b, c, d = labels[:-1, :-1], labels[:-1, 1:], labels[1:, :-1], labels[1:, 1:]
    distinct = 1 + (b != a) + ((c != a) & (c != b)) + ((d != a) & (d != b) & (d != c))
    edges = np.zeros(shape, np.uint8)
    edges[:-1, :-1] = distinct > 1
    border = cv2.distanceTransform(1 - edges, cv2.DIST_L2, 5)
    rows, cols = np.nonzero(distinct >= 3)
    _, first = np.unique(np.stack([rows // 4, cols // 4], axis=1), axis=0, return_index=True)
    junctions = np.stack([cols[first] + 0.5, rows[first] + 0.5], axis=1).astype(np.float64)
    return labels, border, junctions


def cell_values(labels: np.ndarray, points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Spread one value per Voronoi seed (``points[i]`` gets ``values[i]``) over its cell."""
    lookup = np.zeros(int(labels.max()) + 1, np.float32)
    lookup[labels[pixel_index(points, labels.shape)]] = values
    return lookup[labels]


def random_walk(rng: np.random.Generator, start, heading: float, steps: int, step: float,
                turn: float) -> np.ndarray:
    """A smooth random curve of ``steps`` segments of ``step`` px whose heading drifts by ``turn`` rad per step."""
    curvature = np.cumsum(rng.normal(0, turn, steps)) * 0.5 + rng.normal(0, turn)
    angles = heading + np.cumsum(curvature)
    moves = np.stack([np.cos(angles), np.sin(angles)], axis=1) * step
    return np.vstack([start, np.asarray(start) + np.cumsum(moves, axis=0)])


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SUBPIXEL)).astype(np.int32).reshape(-1, 1, 2)


def polyline(layer: np.ndarray, points: np.ndarray, value: float, thickness: float) -> None:
    """Draw an open curve of ``thickness`` px (values overwrite) into ``layer``."""
    cv2.polylines(layer, [_fixed(points)], False, float(value), max(1, int(round(thickness))),
                  cv2.LINE_8, SUBPIXEL)


def fill(layer: np.ndarray, polygon: np.ndarray, value: float) -> None:
    """Fill a closed polygon of ``(x, y)`` points (values overwrite) in ``layer``."""
    cv2.fillPoly(layer, [_fixed(polygon)], float(value), cv2.LINE_8, SUBPIXEL)


def blob(rng: np.random.Generator, centre, radius: float, roughness: float = 0.1, elongation: float = 1.0,
         angle: float | None = None, vertices: int = 72) -> np.ndarray:
    """A closed, smoothly perturbed ellipse as ``(x, y)`` polygon vertices.

    ``roughness`` is the relative amplitude of the low-order harmonics of the radius; ``elongation``
    the ratio of the long to the short axis (``radius`` is their geometric mean).
    """
    theta = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    r = np.ones(vertices)
    for k in range(2, 8):
        r += roughness * rng.uniform(0, 1) / k ** 0.8 * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    angle = rng.uniform(0, np.pi) if angle is None else angle
    x, y = radius * r * np.cos(theta) * np.sqrt(elongation), radius * r * np.sin(theta) / np.sqrt(elongation)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], axis=1)


def paint(layers: dict[str, np.ndarray], polygon: np.ndarray, values: dict[str, float]) -> None:
    """Fill ``polygon`` in every layer: ``values[name]`` where given, else 0 (it covers what was there)."""
    for name, layer in layers.items():
        fill(layer, polygon, values.get(name, 0.0))


def ring(layers: dict[str, np.ndarray], rng: np.random.Generator, centre, radius: float, rim: float,
         rim_values: dict[str, float], core_values: dict[str, float], roughness: float = 0.1,
         elongation: float = 1.0) -> None:
    """A round structure: a rim of ``rim`` px painted with ``rim_values`` around a core painted with ``core_values``."""
    outer = blob(rng, centre, radius, roughness, elongation)
    paint(layers, outer, rim_values)
    paint(layers, centre + (outer - centre) * max(radius - rim, 0.5) / radius, core_values)


def texture(shape, rng: np.random.Generator, unit: float, level: float, spread: float) -> np.ndarray:
    """A grainy density of mean ``level`` (fine and coarse noise of amplitude ``spread``), clipped to [0, 1]."""
    fine = noise(shape, rng, 1.5 * unit) * 0.6 + noise(shape, rng, 8 * unit) * 0.4
    return np.clip(level + spread * fine, 0, 1).astype(np.float32)


def stroke(layers: dict[str, np.ndarray], path: np.ndarray, thickness: float, values: dict[str, float]) -> None:
    """Draw a curve of ``thickness`` px in every layer: ``values[name]`` where given, else 0."""
    for name, layer in layers.items():
        polyline(layer, path, values.get(name, 0.0), thickness)


def paint_classes(layers: dict[str, np.ndarray], classes: np.ndarray, values: list[dict[str, float]]) -> None:
    """Where ``classes`` (a map of small integers) is ``k > 0``, paint every layer with ``values[k - 1]``.

    Drawing thousands of shapes as class numbers into one map, then painting once, is much faster
    than drawing each shape into every layer.
    """
    for name, layer in layers.items():
        table = np.array([0.0] + [v.get(name, 0.0) for v in values], np.float32)
        np.copyto(layer, table[classes], where=classes > 0)


def ranked(points: np.ndarray, scores) -> np.ndarray:
    """``points`` ordered by decreasing ``scores`` (the most distinctive landmark candidates first)."""
    return np.asarray(points, np.float64).reshape(-1, 2)[np.argsort(-np.asarray(scores), kind="stable")]
