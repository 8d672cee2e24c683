"""Sections of a specimen: what a microscope shows of consecutive cuts through the same tissue.

Each section is the specimen seen through its own small elastic distortion, with a few bites
missing at the tissue's rim, a fresh scatter of nuclei (consecutive cuts never show the same cells)
and its own random stain; its landmarks are the specimen's mapped exactly into it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .deform import Deformation, random_deformation
from .primitives import LAYERS, blob, fill
from .specimen import Specimen
from .stains import STYLES, Stain, random_stain, render

NUCLEUS_RATE = 0.12     # nuclei per pixel where cellularity is 1
SECTION_COUNT = (4, 5)  # sections per specimen when none is asked for


@dataclass(frozen=True)
class Section:
    """One rendered section: the ``uint8`` RGB ``image``, its ``landmarks`` (``(n, 2)`` ``(x, y)``,
    in the specimen's order), its ``stain``, where it has ``tissue`` (bool: inside its outline and
    not bitten off; lumens count as tissue) and its ``deformation`` from the specimen."""

    image: np.ndarray
    landmarks: np.ndarray
    stain: Stain
    tissue: np.ndarray
    deformation: Deformation


def section_styles(specimen: Specimen, count: int) -> tuple[str, ...]:
    """The stain styles of the first ``count`` sections of ``specimen``: every style once (in random
    order) before any repeats."""
    rng = np.random.default_rng([specimen.seed, 0x57A1])
    rounds = -(-count // len(STYLES))
    return tuple(str(style) for _ in range(rounds) for style in rng.permutation(STYLES))[:count]


def section_count(specimen: Specimen) -> int:
    return int(np.random.default_rng([specimen.seed, 0xC0]).integers(*SECTION_COUNT, endpoint=True))


def make_sections(specimen: Specimen, count: int | None = None, styles=None) -> list[Section]:
    """The first ``count`` sections of ``specimen`` (default 4–5, fixed by its seed), in ``styles``
    (default :func:`section_styles`)."""
    count = section_count(specimen) if count is None else count
    styles = section_styles(specimen, count) if styles is None else tuple(styles)
    return [render_section(specimen, index, style) for index, style in zip(range(count), styles)]


def render_section(specimen: Specimen, index: int, style: str | None = None) -> Section:
    """Section ``index`` of ``specimen`` in a random stain of ``style`` (default: the index's style of
    :func:`section_styles`); the same arguments always give the same section."""
    rng = np.random.default_rng([specimen.seed, index, 0x5EC7])
    style = section_styles(specimen, index + 1)[index] if style is None else style
    deformation = random_deformation(specimen.shape, rng)
    stack = np.dstack([specimen.layers[name] for name in LAYERS] + [specimen.outline.astype(np.float32)])
    warped = deformation.warp(stack)
    landmarks = deformation.to_section(specimen.landmarks)
    tissue = (warped[..., -1] > 0.5) & ~rim_bites(warped[..., -1] > 0.5, landmarks, rng, specimen.unit)
    density = tissue * (1 - warped[..., LAYERS.index("lumen")])
    layers = {name: warped[..., i] * density for i, name in enumerate(LAYERS) if name != "lumen"}
    layers["nuclei"] = scatter_nuclei(layers["cells"], rng)
    layers["tissue"] = density
    stain = random_stain(rng, style)
    return Section(render(layers, stain, rng, specimen.unit), landmarks, stain, tissue, deformation)


def rim_bites(tissue: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, unit: float) -> np.ndarray:
    """Up to three torn-off bits at the tissue's rim (a bool mask), none touching a landmark."""
    missing = np.zeros(tissue.shape, np.float32)
    inner = cv2.erode(tissue.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0)
    rows, cols = np.nonzero(tissue & (inner == 0))
    for _ in range(int(rng.integers(0, 4)) if len(rows) else 0):
        pick = int(rng.integers(len(rows)))
        bite = blob(rng, (cols[pick], rows[pick]), rng.uniform(5, 20) * unit, 0.5, rng.uniform(1, 2)).astype(np.float32)
        if all(cv2.pointPolygonTest(bite, (float(x), float(y)), True) < -3 * unit for x, y in landmarks):
            fill(missing, bite, 1.0)
    return missing > 0


def scatter_nuclei(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Nuclei of 1–3 px scattered with the density of ``cells`` (a density map in [0, 1])."""
    centres = rng.random(cells.shape, dtype=np.float32) < cells * NUCLEUS_RATE
    size = np.zeros(cells.shape, np.float32)
    size[centres] = rng.uniform(0.4, 2.2, int(centres.sum()))
    return np.clip(cv2.GaussianBlur(size, (0, 0), 0.8) * 4, 0, 1)
