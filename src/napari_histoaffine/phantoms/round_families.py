"""Structure families built from round units: glands, kidney tubules, lobules of acini, nodules,
lymphoid follicles and thyroid-like colloid follicles.

Each family is a function ``(shape, rng, unit) -> Structure`` with its own statistics of size,
density, shape and arrangement, so that a registration method meets many kinds of tissue layout.
"""
from __future__ import annotations

import numpy as np

from .primitives import (Structure, blob, cell_values, jittered_points, nearest, new_layers, noise, paint,
                         paint_classes, pixel_index, polyline, random_walk, ranked, ring, stroke, texture, voronoi)


def glands(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Colon/breast-like: ring-shaped glands (a cell rim around a lumen) of varied size in stroma."""
    layers = new_layers(shape)
    layers["stroma"][:] = texture(shape, rng, unit, 0.5, 0.2)
    layers["cells"][:] = texture(shape, rng, unit, 0.15, 0.1)
    spacing = rng.uniform(30, 60) * unit
    centres = jittered_points(shape, rng, spacing, 0.3, keep=rng.uniform(0.55, 0.9))
    radii = spacing * rng.uniform(0.25, 0.38) * np.exp(rng.normal(0, rng.uniform(0.1, 0.35), len(centres)))
    positive = rng.random(len(centres)) < rng.uniform(0.1, 0.6)
    roughness, secretion = rng.uniform(0.05, 0.4), rng.uniform(0, 0.3)
    for centre, radius, marked in zip(centres, radii, positive):
        rim = min(rng.uniform(3, 6) * unit, 0.6 * radius)
        ring(layers, rng, centre, radius + 1.5 * unit, 1.5 * unit, {"walls": 0.6, "collagen": 0.4}, {})
        ring(layers, rng, centre, radius, rim, {"cells": 0.95, "walls": 0.3, "stroma": 0.25, "marker": 0.9 * marked},
             {"lumen": 1.0 - secretion, "stroma": secretion}, roughness, rng.uniform(1, 1.8))
    return Structure(layers, ranked(centres, radii))


def tubules(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Kidney-like: densely packed curved tubes with narrow lumens, and round glomerulus-like tufts."""
    layers = new_layers(shape)
    h, w = shape
    layers["stroma"][:] = texture(shape, rng, unit, 0.3, 0.1)
    layers["cells"][:] = 0.15
    count = int(h * w / (rng.uniform(17, 24) * unit) ** 2)
    width = rng.uniform(9, 14) * unit
    classes = np.zeros(shape, np.uint8)
    for _ in range(count):
        path = random_walk(rng, rng.uniform(0, (w, h)), rng.uniform(0, 2 * np.pi), int(rng.integers(3, 10)),
                           6 * unit, 0.3)
        tube = width * rng.uniform(0.8, 1.2)
        for kind, thickness in enumerate((tube + 2 * unit, tube, max(1.0, rng.uniform(0.1, 0.25) * tube)), 1):
            polyline(classes, path, kind, thickness)
    paint_classes(layers, classes, [{"walls": 0.8, "collagen": 0.3, "stroma": 0.3},
                                    {"cells": 0.8, "stroma": 0.45, "walls": 0.15}, {"lumen": 1.0}])
    glomeruli = jittered_points(shape, rng, rng.uniform(100, 170) * unit, 0.45, keep=0.8)
    radii = rng.uniform(10, 18, len(glomeruli)) * unit
    for centre, radius in zip(glomeruli, radii):
        ring(layers, rng, centre, radius + 3 * unit, 2 * unit, {"walls": 0.85, "collagen": 0.5}, {"lumen": 1.0})
        tuft = {"cells": 1.0, "marker": 0.9, "walls": 0.5, "stroma": 0.3}
        paint(layers, blob(rng, centre, radius - 1.5 * unit, roughness=0.5), tuft)
    return Structure(layers, ranked(glomeruli, radii))


def lobules(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Pancreas/salivary-like: lobules packed with small acini, separated by collagen septa."""
    layers = new_layers(shape)
    seeds = jittered_points(shape, rng, rng.uniform(80, 150) * unit, 0.35)
    labels, border, junctions = voronoi(shape, seeds)
    septum = rng.uniform(2, 5) * unit * (1 + 0.5 * np.clip(noise(shape, rng, 20 * unit), -1, 1))
    in_septum = border < septum
    acinus = rng.uniform(9, 15) * unit
    distance, _ = nearest(shape, jittered_points(shape, rng, acinus, 0.35, keep=0.9))
    lobular = ~in_septum & (border > septum + 0.3 * acinus)
    acini = lobular & (distance < 0.45 * acinus)
    positive = cell_values(labels, seeds, (rng.random(len(seeds)) < 0.35).astype(np.float32))
    layers["stroma"][:] = np.where(in_septum, 0.6, np.where(acini, 0.4, 0.2))
    layers["collagen"][:] = in_septum * 0.8
    layers["cells"][:] = np.where(in_septum, 0.15, np.where(acini, 0.9, 0.1))
    layers["walls"][:] = (lobular & (np.abs(distance - 0.45 * acinus) < 0.8 * unit)) * 0.5
    layers["marker"][:] = acini * positive * 0.8
    layers["lumen"][:] = lobular & ((distance < 0.12 * acinus) | (~acini & (distance > 0.6 * acinus)))
    for centre in junctions[rng.random(len(junctions)) < 0.3]:
        ring(layers, rng, centre, rng.uniform(4, 7) * unit, 2 * unit,
             {"cells": 0.9, "walls": 0.6, "collagen": 0.5}, {"lumen": 1.0})
    return Structure(layers, np.vstack([junctions, seeds]))


def nodules(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Tumour/granuloma-like: a few large dense round nodules in loose tissue with small vessels."""
    layers = new_layers(shape)
    h, w = shape
    layers["stroma"][:] = texture(shape, rng, unit, 0.35, 0.2)
    layers["cells"][:] = texture(shape, rng, unit, 0.1, 0.08)
    holes, _ = nearest(shape, jittered_points(shape, rng, 22 * unit, 0.45, keep=0.35))
    layers["lumen"][:] = holes < rng.uniform(1.5, 4) * unit
    vessels = jittered_points(shape, rng, rng.uniform(50, 90) * unit, 0.4, keep=0.5)
    for centre in vessels:
        ring(layers, rng, centre, rng.uniform(3, 7) * unit, 2 * unit, {"walls": 0.9, "marker": 0.5}, {"lumen": 1.0})
    centres, radii = [], []
    for _ in range(int(rng.integers(4, 10) * h * w / (700 * 500 * unit ** 2)) + 2):
        radius, centre = rng.uniform(30, 90) * unit, rng.uniform(0, (w, h))
        if all(np.hypot(*(centre - c)) > radius + r + 8 * unit for c, r in zip(centres, radii)):
            centres.append(centre)
            radii.append(radius)
    for centre, radius in zip(centres, radii):
        outline = blob(rng, centre, radius, rng.uniform(0.1, 0.5), rng.uniform(1, 1.6))
        paint(layers, centre + (outline - centre) * (radius + 3 * unit) / radius, {"collagen": 0.8, "stroma": 0.6})
        paint(layers, outline, {"cells": 0.95, "marker": rng.uniform(0.4, 1), "stroma": 0.3})
        if rng.random() < 0.5:
            paint(layers, blob(rng, centre + rng.normal(0, 0.2 * radius, 2), 0.35 * radius, 0.4),
                  {"stroma": 0.7, "cells": 0.25})
    return Structure(layers, np.vstack([ranked(np.reshape(centres, (-1, 2)), radii), vessels]))


def follicles(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Lymph-node-like: dense lymphoid tissue with round follicles (dark mantle, pale bright centre) and sinuses."""
    layers = new_layers(shape)
    h, w = shape
    layers["cells"][:] = texture(shape, rng, unit, 0.55, 0.12)
    layers["stroma"][:] = 0.25
    for _ in range(int(rng.integers(4, 10) * h * w / (700 * 500 * unit ** 2))):
        path = random_walk(rng, rng.uniform(0, (w, h)), rng.uniform(0, 2 * np.pi), 25, 8 * unit, 0.25)
        stroke(layers, path, rng.uniform(3, 7) * unit, {"lumen": 0.7, "stroma": 0.5, "cells": 0.2})
    centres = jittered_points(shape, rng, rng.uniform(60, 110) * unit, 0.35, keep=rng.uniform(0.45, 0.8))
    radii = rng.uniform(16, 40, len(centres)) * unit
    for centre, radius in zip(centres, radii):
        mantle = rng.uniform(0.2, 0.35) * radius
        ring(layers, rng, centre, radius, mantle, {"cells": 1.0, "stroma": 0.1},
             {"cells": 0.25, "marker": 0.9, "stroma": 0.5}, 0.15, rng.uniform(1, 1.4))
    return Structure(layers, ranked(centres, radii))


def colloid(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Thyroid-like: packed follicles of very varied size, a thin cell rim around homogeneous colloid."""
    layers = new_layers(shape)
    spacing = rng.uniform(14, 30) * unit
    points = jittered_points(shape, rng, spacing, 0.45)
    density = noise(shape, rng, 6 * spacing)[pixel_index(points, shape)]
    points = points[rng.random(len(points)) < np.clip(0.45 + 0.35 * density, 0.08, 1)]
    labels, border, _ = voronoi(shape, points)
    wall = rng.uniform(0.8, 1.8) * unit
    rim = wall + rng.uniform(1.5, 3) * unit
    colloid_level = cell_values(labels, points, rng.uniform(0.5, 0.9, len(points)))
    empty = cell_values(labels, points, (rng.random(len(points)) < 0.15).astype(np.float32))
    inside = border >= rim
    layers["walls"][:] = (border < wall) * 0.5
    layers["stroma"][:] = np.where(inside, colloid_level, 0.3)
    layers["cells"][:] = ((border >= wall) & ~inside) * 0.9
    layers["marker"][:] = inside * cell_values(labels, points, (rng.random(len(points)) < 0.3) * 0.8)
    layers["lumen"][:] = inside * np.maximum(empty, (border > rim + 2 * unit) * (noise(shape, rng, 3 * unit) > 2.2))
    areas = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    return Structure(layers, ranked(points, areas[labels[pixel_index(points, shape)]]))
