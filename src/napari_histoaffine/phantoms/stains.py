"""Random stains: how a section's layers become a bright-field or fluorescence RGB image.

A stain is a handful of dyes, each bound to some layers with some strength; which structures a stain
shows, and in which colour, is random, so a method trained or tuned on phantoms cannot rely on any
one stain's look (the stain randomisation of SynthMorph). Bright-field dyes absorb light
(Beer–Lambert, on white-ish glass); fluorescent dyes emit it (on a dark field).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from .primitives import noise

STYLES = ("he", "dab", "special", "pale", "fluorescence")
HAEMATOXYLIN = (0.65, 0.70, 0.29)  # optical density per RGB channel (Ruifrok & Johnston)
EOSIN = (0.07, 0.99, 0.11)
DAB = (0.27, 0.57, 0.78)
NUCLEAR_HUES = (0.6, 0.75)  # blue to violet: what most nuclear counterstains look like


@dataclass(frozen=True)
class Dye:
    """One dye: its ``colour`` (optical density per RGB channel for bright-field, emitted RGB for
    fluorescence, at unit concentration) and its concentration per unit density of each layer."""

    colour: tuple[float, float, float]
    weights: dict[str, float]


@dataclass(frozen=True)
class Stain:
    """A stain ``style`` (one of :data:`STYLES`) with its dyes and its imaging: the ``background``
    (glass, or the dark field of fluorescence; RGB in [0, 1]), the optical ``blur`` (px), the
    per-pixel ``grain`` and the ``unevenness`` of the staining across the section."""

    style: str
    dyes: tuple[Dye, ...]
    background: tuple[float, float, float]
    blur: float
    grain: float
    unevenness: float

    @property
    def fluorescent(self) -> bool:
        return self.style == "fluorescence"


def _unit(vector) -> tuple[float, float, float]:
    v = np.asarray(vector, np.float64)
    return tuple(float(x) for x in v / np.linalg.norm(v))


def _jittered(density, rng: np.random.Generator, spread: float = 0.06) -> tuple[float, float, float]:
    return _unit(np.clip(np.asarray(density) + rng.normal(0, spread, 3), 0.02, None))


def _absorbance(hue: float, saturation: float) -> tuple[float, float, float]:
    """The optical density of a dye that looks like ``hue`` on white light."""
    seen = np.clip(colorsys.hsv_to_rgb(hue % 1.0, saturation, 1.0), 0.05, 1.0)
    return _unit(-np.log(seen))


def _some(rng: np.random.Generator, names, chance: float, low: float, high: float) -> dict[str, float]:
    return {name: float(rng.uniform(low, high)) for name in names if rng.random() < chance}


def random_stain(rng: np.random.Generator, style: str | None = None) -> Stain:
    """A random stain of ``style`` (random when None)."""
    style = str(rng.choice(STYLES)) if style is None else style
    if style not in STYLES:
        raise ValueError(f"Unknown stain style {style!r}; known: {', '.join(STYLES)}")
    if style == "fluorescence":
        return _fluorescence(rng)
    if style == "he" or (style == "pale" and rng.random() < 0.5):
        dyes = _he(rng)
    elif style == "dab":
        dyes = _dab(rng)
    else:
        dyes = _special(rng)
    if style == "pale":
        fade = rng.uniform(0.12, 0.3)
        dyes = tuple(Dye(d.colour, {k: w * fade for k, w in d.weights.items()}) for d in dyes)
    glass = np.clip(rng.uniform(0.9, 0.98) + rng.normal(0, 0.015, 3), 0, 1)
    return Stain(style, dyes, tuple(float(x) for x in glass), float(rng.uniform(0.4, 1.0)),
                 float(rng.uniform(0.005, 0.02)), float(rng.uniform(0.05, 0.25)))


def _he(rng: np.random.Generator) -> tuple[Dye, ...]:
    haematoxylin = Dye(_jittered(HAEMATOXYLIN, rng), {"nuclei": rng.uniform(1.2, 2.0), "cells": rng.uniform(0.3, 0.6),
                                                      "walls": 0.1, "tissue": 0.04})
    eosin = Dye(_jittered(EOSIN, rng), {"stroma": rng.uniform(0.3, 0.6), "walls": rng.uniform(0.5, 0.9),
                                        "collagen": rng.uniform(0.3, 0.7), "cells": rng.uniform(0.3, 0.6),
                                        "marker": rng.uniform(0, 0.3), "tissue": 0.08})
    return haematoxylin, eosin


def _dab(rng: np.random.Generator) -> tuple[Dye, ...]:
    counterstain = Dye(_jittered((0.75, 0.6, 0.2), rng), {"nuclei": rng.uniform(0.5, 1.1), "cells": rng.uniform(0.1, 0.3),
                                                          "walls": 0.05, "tissue": 0.06})
    targets = {"marker": float(rng.uniform(0.8, 1.6))} | _some(
        rng, ("walls", "cells", "collagen", "stroma", "nuclei"), 0.25, 0.3, 0.9)
    return counterstain, Dye(_jittered(DAB, rng, 0.04), targets)


def _special(rng: np.random.Generator) -> tuple[Dye, ...]:
    """Two or three dyes of random hue, e.g. trichrome- or PAS-like: one nuclear, one fibrous, one for cells."""
    groups = [{"nuclei": rng.uniform(0.8, 1.6), "tissue": 0.03},
              {"collagen": rng.uniform(0.6, 1.3), "stroma": rng.uniform(0.1, 0.5), "tissue": 0.05},
              {"cells": rng.uniform(0.3, 0.8), "walls": rng.uniform(0.2, 0.9), "marker": rng.uniform(0, 1.0),
               "stroma": rng.uniform(0, 0.2)}]
    keep = rng.random(3) < 0.75
    if keep.sum() < 2:
        keep[rng.choice(3, 2, replace=False)] = True
    hues = [rng.uniform(*NUCLEAR_HUES) if i == 0 else rng.uniform(0, 1) for i in range(3)]
    used = [(hue, weights) for hue, weights, kept in zip(hues, groups, keep) if kept]
    return tuple(Dye(_absorbance(hue, rng.uniform(0.45, 0.9)), weights) for hue, weights in used)


def _fluorescence(rng: np.random.Generator) -> Stain:
    """One or two emitting dyes, each in its own colour channel: e.g. a DAPI-like nuclear stain and a marker."""
    channels = rng.permutation(3) if rng.random() < 0.3 else np.array([2, *rng.permutation([0, 1])])
    nuclear = {"nuclei": rng.uniform(1.0, 2.0), "cells": rng.uniform(0.2, 0.5), "tissue": rng.uniform(0.1, 0.3)}
    marker = {"marker": float(rng.uniform(1.0, 2.0)), "tissue": float(rng.uniform(0.1, 0.3))} | _some(
        rng, ("walls", "collagen", "stroma", "cells"), 0.3, 0.3, 1.0)
    weights = [nuclear, marker] if rng.random() < 0.7 else [[nuclear, marker][int(rng.integers(0, 2))]]
    dyes = tuple(Dye(tuple(float(c == channel) for c in range(3)), w) for channel, w in zip(channels, weights))
    dark = np.clip(rng.uniform(0.0, 0.05) + rng.normal(0, 0.008, 3), 0, 1)
    return Stain("fluorescence", dyes, tuple(float(x) for x in dark), float(rng.uniform(0.5, 1.1)),
                 float(rng.uniform(0.005, 0.02)), float(rng.uniform(0.1, 0.3)))


def render(layers: dict[str, np.ndarray], stain: Stain, rng: np.random.Generator, unit: float) -> np.ndarray:
    """The ``uint8`` RGB image of ``layers`` (float32 densities, already zero off tissue) in ``stain``."""
    shape = next(iter(layers.values())).shape
    amount = np.zeros((*shape, 3), np.float32)
    for dye in stain.dyes:
        concentration = np.zeros(shape, np.float32)
        for name, weight in dye.weights.items():
            concentration += np.float32(weight) * layers[name]
        concentration *= np.clip(1 + stain.unevenness * noise(shape, rng, 200 * unit), 0.3, None)
        amount += concentration[..., None] * np.asarray(dye.colour, np.float32)
    background = np.asarray(stain.background, np.float32)
    image = background + (1 - background) * (1 - np.exp(-amount)) if stain.fluorescent \
        else background * np.exp(-amount)
    image = cv2.GaussianBlur(image, (0, 0), stain.blur)
    image += stain.grain * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
