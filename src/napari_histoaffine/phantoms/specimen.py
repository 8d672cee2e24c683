"""A phantom specimen: one piece of synthetic tissue with exact landmarks, made from a seed.

The specimen is the ground truth that every section is cut from: its layers (what is where), its
outline and its landmark points. ``make_specimen(seed)`` always returns the same specimen, so a
dataset is defined by its seeds alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .families import FAMILIES, check_families
from .layout import make_outline, region_weights
from .primitives import LAYERS, Structure, new_layers, pixel_index, texture

LONG_SIDE = (560, 1100)   # px, the range of a specimen's long side when none is asked for
LANDMARK_TARGET = (60, 90)
MIN_LANDMARKS = 40
REGION_OWNERSHIP = 0.6     # a family's candidate counts where that family's region weight exceeds this


@dataclass(frozen=True)
class Specimen:
    """Ground truth of one phantom: ``layers`` (float32 maps in [0, 1], names in :data:`LAYERS`) on
    the specimen grid, the tissue ``outline`` (bool), and ``landmarks`` as ``(n, 2)`` ``(x, y)``.

    ``unit`` is the size of a nominal pixel (of a 900-px image) in pixels of this grid.
    """

    seed: int
    families: tuple[str, ...]
    outline_kind: str
    outline: np.ndarray
    layers: dict[str, np.ndarray]
    landmarks: np.ndarray
    unit: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.outline.shape


def make_specimen(seed: int, families=None, *, long_side: int | None = None) -> Specimen:
    """The specimen of ``seed``: 1–3 families drawn from ``families`` (all of :data:`FAMILIES` when
    None) placed in regions of a random outline, on generic stroma.

    ``long_side`` fixes the image's long side in pixels (else random in :data:`LONG_SIDE`).
    """
    rng = np.random.default_rng([seed, 0x5BEC])
    pool = check_families(FAMILIES if families is None else families)
    chosen = tuple(str(name) for name in rng.choice(pool, min(len(pool), int(rng.integers(1, 4))), replace=False))
    long_side = int(long_side or rng.integers(*LONG_SIDE, endpoint=True))
    short_side = int(round(long_side / rng.uniform(1.0, 1.5)))
    shape = (short_side, long_side) if rng.random() < 0.7 else (long_side, short_side)
    unit = long_side / 900
    outline, kind = make_outline(shape, rng, unit)
    weights = region_weights(shape, rng, len(chosen), unit)
    structures = [FAMILIES[name](shape, rng, unit) for name in chosen] + [connective(shape, rng, unit)]
    layers = {name: sum(weight * s.layers[name] for weight, s in zip(weights, structures)) for name in LAYERS}
    candidates = [s.candidates[weights[i][pixel_index(s.candidates, shape)] > REGION_OWNERSHIP]
                  for i, s in enumerate(structures[:-1])]
    landmarks = pick_landmarks(rng, candidates, layers, outline, unit)
    return Specimen(seed, chosen, kind, outline, layers, landmarks, unit)


def connective(shape, rng: np.random.Generator, unit: float) -> Structure:
    """Generic loose connective tissue: the stroma between and around the families' regions."""
    layers = new_layers(shape)
    layers["stroma"][:] = texture(shape, rng, unit, 0.35, 0.2)
    layers["cells"][:] = texture(shape, rng, unit, 0.07, 0.05)
    layers["collagen"][:] = texture(shape, rng, unit, 0.15, 0.15)
    return Structure(layers, np.zeros((0, 2)))


def appearance(layers: dict[str, np.ndarray], outline: np.ndarray) -> np.ndarray:
    """A stain-neutral grey picture of the specimen (tissue density): where structure is seen."""
    tissue = outline * (1 - layers["lumen"])
    return tissue * (0.3 * layers["stroma"] + 0.6 * layers["cells"] + 0.5 * layers["walls"]
                     + 0.4 * layers["collagen"] + 0.3 * layers["marker"] + 0.2)


def safe_interior(outline: np.ndarray, margin: float) -> np.ndarray:
    """Tissue at least ``margin`` px from the tissue's rim and from the image border."""
    framed = np.pad(outline, 1).astype(np.uint8)
    return cv2.distanceTransform(framed, cv2.DIST_L2, 5)[1:-1, 1:-1] > margin


def pick_landmarks(rng: np.random.Generator, candidates: list[np.ndarray], layers: dict[str, np.ndarray],
                   outline: np.ndarray, unit: float) -> np.ndarray:
    """Landmarks spread over the tissue: the families' candidates first (taken in turns), then the
    corners of the tissue's appearance, no two closer than a spacing set by the tissue's area."""
    interior = safe_interior(outline, max(6.0, 14 * unit))
    target = int(rng.integers(*LANDMARK_TARGET, endpoint=True))
    picture = cv2.GaussianBlur(appearance(layers, outline).astype(np.float32), (0, 0), 1.5 * unit)
    spacing = 0.8 * np.sqrt(interior.sum() / target)
    corners = cv2.goodFeaturesToTrack(picture, 600, 0.01, max(2.0, spacing / 3), mask=interior.astype(np.uint8))
    turns = [np.arange(len(c)) for c in candidates]
    points = np.concatenate([*candidates, np.zeros((0, 2))])
    points = points[np.argsort(np.concatenate([*turns, np.zeros(0)]), kind="stable")]
    points = np.concatenate([points, np.zeros((0, 2)) if corners is None else corners.reshape(-1, 2)])
    points = points[interior[pixel_index(points, outline.shape)]]
    while True:
        chosen = _spread(points, spacing, target)
        if len(chosen) >= MIN_LANDMARKS or spacing < 1:
            break
        spacing *= 0.8
    if len(chosen) < MIN_LANDMARKS:
        raise ValueError(f"Only {len(chosen)} landmarks fit in this specimen's tissue (need {MIN_LANDMARKS})")
    return chosen


def _spread(points: np.ndarray, spacing: float, target: int) -> np.ndarray:
    """The first points (in order) that keep ``spacing`` px from every point taken before, at most ``target``."""
    taken = np.empty((target, 2))
    count = 0
    for point in points:
        if count == target:
            break
        if count == 0 or np.min(np.sum((taken[:count] - point) ** 2, axis=1)) >= spacing ** 2:
            taken[count] = point
            count += 1
    return taken[:count]
