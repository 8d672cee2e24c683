"""Structure families built from networks and lines: lung alveoli, fat, branching vessels, fibre
bundles and liver lobules with radiating cell plates.

Each family is a function ``(shape, rng, unit) -> Structure`` with its own statistics of size,
density, shape and arrangement, so that a registration method meets many kinds of tissue layout.
"""
from __future__ import annotations

import cv2
import numpy as np

from .primitives import (Structure, blob, cell_values, jittered_points, nearest, new_layers, noise, paint,
                         random_walk, ranked, ring, stroke, texture, voronoi)


def alveoli(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Lung-like: a foam of thin alveolar walls with large airspaces, bronchioles and arteries."""
    layers = new_layers(shape)
    _, border, _ = voronoi(shape, jittered_points(shape, rng, rng.uniform(10, 17) * unit, 0.45))
    thickening = np.clip(noise(shape, rng, rng.uniform(80, 200) * unit) - 0.6, 0, None) * rng.uniform(1, 4)
    wall = rng.uniform(0.6, 1.2) * unit * (1 + thickening)
    walls = border < wall
    layers["walls"][:] = walls * 0.7
    layers["cells"][:] = walls * np.clip(0.45 + 0.3 * thickening, 0, 1)
    layers["stroma"][:] = walls * 0.3
    layers["lumen"][:] = ~walls
    spaces = jittered_points(shape, rng, rng.uniform(60, 110) * unit, 0.45, keep=0.5)
    for centre in spaces:
        paint(layers, blob(rng, centre, rng.uniform(12, 35) * unit, 0.5, rng.uniform(1, 2.5)), {"lumen": 1.0})
    airways = jittered_points(shape, rng, rng.uniform(130, 220) * unit, 0.4, keep=0.6)
    for centre in airways:
        radius = rng.uniform(15, 32) * unit
        ring(layers, rng, centre, radius + 4 * unit, 4 * unit, {"collagen": 0.8, "stroma": 0.6, "walls": 0.4},
             {"lumen": 1.0})
        ring(layers, rng, centre, radius, rng.uniform(4, 7) * unit, {"cells": 1.0, "marker": 0.9, "walls": 0.3},
             {"lumen": 1.0}, 0.3, rng.uniform(1, 1.8))
        side = rng.uniform(0, 2 * np.pi)
        artery = centre + (radius + 12 * unit) * np.array([np.cos(side), np.sin(side)])
        ring(layers, rng, artery, rng.uniform(6, 11) * unit, 3 * unit, {"walls": 0.9, "collagen": 0.5,
                                                                         "cells": 0.4}, {"lumen": 1.0})
    return Structure(layers, np.vstack([airways, spaces]))


def adipose(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Fat-like: large empty cells with hair-thin walls, divided by collagen septa carrying small vessels."""
    layers = new_layers(shape)
    _, border, _ = voronoi(shape, jittered_points(shape, rng, rng.uniform(20, 34) * unit, 0.45))
    walls = border < rng.uniform(0.5, 0.8) * unit
    _, coarse, junctions = voronoi(shape, jittered_points(shape, rng, rng.uniform(120, 220) * unit, 0.4))
    septa = coarse < rng.uniform(1.5, 4) * unit * (1 + 0.6 * np.clip(noise(shape, rng, 30 * unit), -1, 1))
    layers["walls"][:] = walls * 0.6
    layers["collagen"][:] = septa * 0.75
    layers["stroma"][:] = np.maximum(walls * 0.3, septa * 0.6)
    layers["cells"][:] = np.maximum(walls * (noise(shape, rng, 2 * unit) > 1.6), septa * 0.3)
    layers["lumen"][:] = ~(walls | septa)
    for centre in junctions:
        ring(layers, rng, centre, rng.uniform(3, 8) * unit, 2 * unit, {"walls": 0.9, "marker": 0.8, "cells": 0.4},
             {"lumen": 1.0})
    return Structure(layers, junctions)


def vessels(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Vascular: branching vessel trees of decreasing calibre (walls with a marker-positive lining) in stroma."""
    layers = new_layers(shape)
    h, w = shape
    layers["stroma"][:] = texture(shape, rng, unit, 0.4, 0.2)
    layers["cells"][:] = texture(shape, rng, unit, 0.1, 0.06)
    layers["collagen"][:] = 0.1
    segments, branches = [], []

    def grow(start, heading, radius, depth):
        length = radius * rng.uniform(6, 12) + 20 * unit
        path = random_walk(rng, start, heading, max(3, int(length / (4 * unit))), 4 * unit, 0.06)
        segments.append((path, radius))
        if radius > 2.2 * unit and depth < 8 and 0 <= path[-1, 0] < w and 0 <= path[-1, 1] < h:
            branches.append((path[-1], radius))
            end_heading = np.arctan2(*(path[-1] - path[-2])[::-1])
            split = rng.uniform(0.3, 0.8)
            share = rng.uniform(0.35, 0.65)
            grow(path[-1], end_heading + split * (1 - share), radius * rng.uniform(0.6, 0.85), depth + 1)
            grow(path[-1], end_heading - split * share, radius * rng.uniform(0.6, 0.85), depth + 1)

    for _ in range(int(rng.integers(3, 7) * np.sqrt(h * w) / (500 * unit)) + 1):
        grow(rng.uniform(0, (w, h)), rng.uniform(0, 2 * np.pi), rng.uniform(6, 14) * unit, 0)
    for path, radius in segments:
        stroke(layers, path, 2 * radius + 2 * (0.3 * radius + unit),
               {"walls": 0.85, "collagen": 0.4 + 0.03 * radius / unit, "stroma": 0.3, "cells": 0.35})
    for path, radius in segments:
        stroke(layers, path, 1.7 * radius + 3.5 * unit, {"marker": 0.9, "walls": 0.6, "cells": 0.5})
    for path, radius in segments:
        stroke(layers, path, 1.7 * radius, {"lumen": 1.0} if radius > 2.5 * unit else {"stroma": 0.8, "cells": 0.1})
    return Structure(layers, ranked(np.reshape([p for p, _ in branches], (-1, 2)), [r for _, r in branches]))


def fibres(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Muscle/tendon-like: oriented wavy fibre bundles split by clefts and collagen septa, a few vessels."""
    layers = new_layers(shape)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along, across = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    crimp = rng.uniform(0.5, 3) * unit * np.sin(2 * np.pi * along / (rng.uniform(20, 45) * unit))
    across = across + crimp + rng.uniform(15, 40) * unit * noise(shape, rng, rng.uniform(150, 300) * unit)
    period = rng.uniform(10, 22) * unit
    phase = across / period + 0.25 * noise(shape, rng, rng.uniform(30, 80) * unit)
    wave = np.cos(2 * np.pi * phase)
    bundle_index = np.floor(phase + 0.5).astype(np.int64)
    marked = rng.random(1024) < rng.uniform(0.2, 0.5)
    fascicle = np.cos(2 * np.pi * phase / rng.integers(4, 8))
    streaks = cv2.filter2D(rng.standard_normal(shape).astype(np.float32),
                           -1, _line_kernel(angle, max(3, int(9 * unit))))
    septa = fascicle > 0.985
    layers["stroma"][:] = np.clip(0.55 + 0.25 * streaks, 0, 1)
    layers["collagen"][:] = np.where(septa, 0.9, 0.15 * (wave > 0))
    layers["cells"][:] = np.where(septa, 0.3, np.clip(streaks - 0.8, 0, 1) * 0.8 + 0.05)
    layers["marker"][:] = marked[bundle_index % 1024] * (wave > -0.5) * 0.7
    layers["walls"][:] = (np.abs(wave + 0.75) < 0.1) * 0.5
    layers["lumen"][:] = (wave < -0.93) & ~septa
    septal = np.argwhere(septa[::7, ::7])[:, ::-1] * 7.0
    chosen = septal[rng.random(len(septal)) < h * w / (70 * unit) ** 2 / max(len(septal), 1)]
    for centre in chosen:
        ring(layers, rng, centre, rng.uniform(3, 9) * unit, 2.5 * unit, {"walls": 0.9, "marker": 0.6}, {"lumen": 1.0})
    return Structure(layers, chosen)


def _line_kernel(angle: float, length: int) -> np.ndarray:
    """A normalised straight line of ``length`` px at ``angle``: blurs along the fibre direction."""
    kernel = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    offset = np.array([np.cos(angle), np.sin(angle)]) * c
    cv2.line(kernel, tuple(np.round(c - offset).astype(int)), tuple(np.round(c + offset).astype(int)), 1.0)
    return kernel / np.sqrt(kernel.sum())


def liver(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Liver-like: lobules of cell plates radiating from a central vein, portal tracts at their corners."""
    layers = new_layers(shape)
    h, w = shape
    spacing = rng.uniform(70, 120) * unit
    veins = jittered_points(shape, rng, spacing, 0.3)
    labels, border, junctions = voronoi(shape, veins)
    distance, _ = nearest(shape, veins)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    bearing = np.arctan2(y - cell_values(labels, veins, veins[:, 1]), x - cell_values(labels, veins, veins[:, 0]))
    plates = np.round(np.pi * spacing / (rng.uniform(7, 11) * unit))
    sinusoid = np.cos(plates * bearing + 1.2 * noise(shape, rng, 12 * unit)) > rng.uniform(0.35, 0.6)
    sinusoid &= distance > 8 * unit
    layers["cells"][:] = texture(shape, rng, unit, 0.3, 0.1)
    layers["stroma"][:] = 0.65
    layers["walls"][:] = (border < 1.0 * unit) * 0.3
    layers["lumen"][:] = sinusoid * 0.85
    layers["marker"][:] = np.clip(1 - distance / (0.35 * spacing), 0, 1) * rng.uniform(0.4, 0.9)
    for centre in veins:
        ring(layers, rng, centre, rng.uniform(4, 9) * unit, 1.5 * unit, {"walls": 0.8, "cells": 0.3}, {"lumen": 1.0})
    portal = junctions[rng.random(len(junctions)) < 0.5]
    for centre in portal:
        paint(layers, blob(rng, centre, rng.uniform(8, 14) * unit, 0.4, rng.uniform(1, 2)),
              {"collagen": 0.85, "stroma": 0.6, "cells": 0.35})
        ring(layers, rng, centre + rng.normal(0, 2 * unit, 2), rng.uniform(3, 6) * unit, 1.5 * unit,
             {"walls": 0.9}, {"lumen": 1.0})
        ring(layers, rng, centre + rng.normal(0, 4 * unit, 2), 2.5 * unit, 1.5 * unit,
             {"cells": 1.0, "marker": 0.8}, {"lumen": 1.0})
    return Structure(layers, np.vstack([veins, portal]))
