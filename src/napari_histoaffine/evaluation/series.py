"""Serial-section series: every section of a block registered onto one reference section (no napari here).

Directly, each moving section is registered onto the reference. Along the chain (``chain=True``),
each section is registered onto its neighbour toward the reference (the one before it in the list;
the first onto the reference) and the transforms are composed, for long series whose far sections
share little with the reference. The registrations themselves run as one batch
(:func:`napari_histoaffine.evaluation.batch.run_batch`: serially, on a local dask cluster or on a running one),
so a section that fails is recorded and the others go on; along the chain a failed link leaves
every section behind it unregistered, and says so.

Outputs in ``out_dir``: ``<section>/transform.json`` (the format of ``histoaffine register``; its
matrix maps that section's full-resolution pixels to the reference's), ``summary.csv`` (section,
rotation, mirror, confidence, flagged, rTRE where both landmark files are found, error), with
``warp`` also ``<section>/warped.ome.tif`` (the section on the reference's grid, pyramidal), and
``registrations/`` (the batch: its pairs table, per-link transforms and results).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import pandas as pd

from .. import transforms
from ..errors import HistoAffineError, InputError
from ..files.atomic import atomic_write, write_json
from ..files.tables import read_landmarks, write_landmarks
from ..files.tiles import image_shape
from ..progress import Progress
from ..registration.options import RegistrationOptions
from ..registration.pipeline import register
from ..registration.results import RegistrationResult
from ..registration.verdict import FLAG_BELOW
from ..warp import warp_to_ome_tiff
from . import metrics
from .batch import run_batch
from .evaluate import BatchMode

SUMMARY_COLUMNS = ("section", "rotation_deg", "mirrored", "confidence", "flagged", "rtre_median", "error")


def register_sections_steps(reference: np.ndarray, sections: list[tuple[str, np.ndarray, tuple]], reference_full_shape,
                            options: RegistrationOptions | None = None) -> Generator[Progress, None, dict]:
    """Register in-memory sections ``(name, array, full shape)`` onto ``reference`` one by one.

    Yields progress after each section (so a GUI can cancel between sections) and returns
    ``{name: RegistrationResult or the error message}``; a section that fails does not stop the rest.
    """
    outcomes: dict[str, RegistrationResult | str] = {}
    for i, (name, array, full_shape) in enumerate(sections):
        try:
            outcomes[name] = register(array, reference, options, moving_full_shape=full_shape,
                                      fixed_full_shape=reference_full_shape)
            message = f"{name}: {outcomes[name].headline}"
        except HistoAffineError as exc:
            outcomes[name] = message = f"{name}: {exc}"
        yield Progress("series", (i + 1) / len(sections), message)
    return outcomes


def _section(path) -> str:
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[:-len(suffix)]
    return Path(path).stem


def _landmarks(folder, section: str) -> np.ndarray | None:
    path = Path(folder) / f"{section}.csv" if folder else None
    return read_landmarks(path) if path is not None and path.is_file() else None


def register_series(reference, movings, out_dir, options: RegistrationOptions | None = None, *, chain: bool = False,
                    landmarks_dir=None, warp: bool = False, workers: int | None = None, scheduler: str | None = None,
                    resume: bool = False, on_progress: Callable[[Progress], None] | None = None) -> pd.DataFrame:
    """Register every moving section onto ``reference``; writes the outputs above and returns the summary."""
    paths = [str(Path(p).resolve()) for p in [reference, *movings]]
    sections = [_section(p) for p in paths]
    if not movings:
        raise InputError("a series needs at least one moving section besides the reference")
    if len(set(sections)) != len(sections):
        raise InputError(f"sections must have different file names: {', '.join(sections)}")
    out = Path(out_dir)
    links = out / "registrations"
    links.mkdir(parents=True, exist_ok=True)
    targets = paths[:-1] if chain else [paths[0]] * len(movings)
    table = pd.DataFrame({"Source image": paths[1:], "Target image": targets, "Case": sections[1:]})
    with atomic_write(links / "pairs.csv") as f:
        table.to_csv(f, index=False)
    results = run_batch(links / "pairs.csv", links, options, mode=BatchMode.REGISTER, workers=workers,
                        scheduler=scheduler, resume=resume, on_progress=on_progress)
    errors = dict(zip(results["Case"], results["error"]))

    reference_shape = image_shape(paths[0])
    reference_landmarks = _landmarks(landmarks_dir, sections[0])
    rows, to_reference, weakest = [], {}, {}
    for path, section, target in zip(paths[1:], sections[1:], targets):
        row = dict.fromkeys(SUMMARY_COLUMNS, float("nan")) | {"section": section, "error": ""}
        try:
            row["error"] = errors.get(section) or ""
            if row["error"]:
                raise InputError(row["error"])
            link = json.loads((links / f"{section}.json").read_text())
            previous = _section(target)
            if chain and previous != sections[0]:
                if previous not in to_reference:
                    raise InputError(f"the chain is broken at {previous}: it was not registered")
                matrix = transforms.compose(np.array(link["matrix"]), to_reference[previous])
                weak = min((weakest[previous], (link["confidence"], section, link["verdict"])))
            else:
                matrix, weak = np.array(link["matrix"]), (link["confidence"], section, link["verdict"])
            to_reference[section], weakest[section] = matrix, weak
            record = {**link, "matrix": matrix.tolist(), "fixed_image": paths[0], "fixed_shape": list(reference_shape),
                      "confidence": weak[0], "flagged": bool(weak[0] < FLAG_BELOW or link["flagged"]),
                      "verdict": weak[2] if weak[1] == section else f"{weak[1]}: {weak[2]}",
                      "chain": sections[:sections.index(section) + 1][::-1] if chain else [section, sections[0]]}
            folder = out / section
            folder.mkdir(exist_ok=True)
            write_json(folder / "transform.json", record)
            angle, mirrored = transforms.rotation_and_mirror(matrix)
            row.update(rotation_deg=angle, mirrored=mirrored, confidence=record["confidence"],
                       flagged=record["flagged"])
            moving_landmarks = _landmarks(landmarks_dir, section)
            if moving_landmarks is not None and reference_landmarks is not None:
                moved = transforms.apply_to_points(matrix, moving_landmarks)
                write_landmarks(folder / "warped_landmarks.csv", moved)
                row["rtre_median"] = metrics.landmark_stats(moved, reference_landmarks,
                                                            metrics.image_diagonal(reference_shape)).rtre_median
            if warp:
                warp_to_ome_tiff(path, matrix, reference_shape, folder / "warped.ome.tif")
        except (InputError, OSError, ValueError) as exc:
            row["error"] = " ".join(str(exc).split())
        rows.append(row)
    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    with atomic_write(out / "summary.csv") as f:
        summary.to_csv(f, index=False)
    return summary
