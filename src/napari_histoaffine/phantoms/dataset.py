"""Write phantom specimens as a dataset in the layout of the shared ANHIR case.

``images/<name>.jpg``, ``landmarks/<name>.csv`` (``,X,Y``) and ``spec.json`` listing the
(source, target) section pairs, exactly like ``shared/data/anhir-lung-lesion-3``, so everything
that reads the shared case (benchmarks, training, evaluation) reads phantoms unchanged.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .families import FAMILIES, check_families
from .sections import Section, make_sections
from .specimen import make_specimen

JPEG_QUALITY = 95
SEED_STRIDE = 100_000  # specimen i of a dataset of seed s has seed s * SEED_STRIDE + i


def specimen_seed(seed: int, index: int) -> int:
    """The seed of specimen ``index`` of the dataset of ``seed`` (the first specimens do not depend on the count)."""
    return seed * SEED_STRIDE + index


def section_pairs(sections: list[Section], rng: np.random.Generator) -> list[tuple[int, int]]:
    """(source, target) section indices: every section onto the first, and one or two pairs among the others."""
    pairs = [(k, 0) for k in range(1, len(sections))]
    others = [(s, t) for s in range(1, len(sections)) for t in range(1, len(sections)) if s != t]
    for pick in rng.permutation(len(others))[:int(rng.integers(1, 3))]:
        pairs.append(others[pick])
    return pairs


def write_landmarks_csv(path: Path, points: np.ndarray) -> None:
    """An ANHIR landmark table as in the shared case: header ``,X,Y``, rows ``index,x,y`` counted from 1."""
    rows = "".join(f"{i},{x:.3f},{y:.3f}\n" for i, (x, y) in enumerate(points.tolist(), 1))
    path.write_text(",X,Y\n" + rows)


def write_dataset(out_dir, specimens: int, seed: int = 0, families=None, sections: int | None = None,
                  long_side: int | None = None) -> Path:
    """Write ``specimens`` phantoms (families drawn from ``families``, all when None; ``sections``
    sections each, default 4–5) under ``out_dir``; returns the path of ``spec.json``."""
    if sections is not None and sections < 2:
        raise ValueError("A specimen needs at least 2 sections to make a registration pair")
    pool = check_families(FAMILIES if families is None else families)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "landmarks").mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(specimens):
        specimen = make_specimen(specimen_seed(seed, index), pool, long_side=long_side)
        cut = make_sections(specimen, sections)
        names = [f"phantom-{seed}-{index:03d}-{k}-{section.stain.style}" for k, section in enumerate(cut)]
        for name, section in zip(names, cut):
            cv2.imwrite(str(out / "images" / f"{name}.jpg"), cv2.cvtColor(section.image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            write_landmarks_csv(out / "landmarks" / f"{name}.csv", section.landmarks)
        rng = np.random.default_rng([specimen.seed, 0x9A1])
        for source, target in section_pairs(cut, rng):
            pairs.append({
                "name": f"phantom-{seed}-{index:03d}_{source}-{cut[source].stain.style}_to_"
                        f"{target}-{cut[target].stain.style}",
                "tissue": "+".join(specimen.families),
                "target": f"images/{names[target]}.jpg",
                "source": f"images/{names[source]}.jpg",
                "target_landmarks": f"landmarks/{names[target]}.csv",
                "source_landmarks": f"landmarks/{names[source]}.csv",
                "landmark_scale": 1.0,
            })
    spec = out / "spec.json"
    spec.write_text(json.dumps({"pairs": pairs}, indent=1) + "\n")
    return spec
