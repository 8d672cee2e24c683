"""Landmark evaluation of registrations over ANHIR/BIRL pair tables (no napari here).

Outputs follow the layout that ``shared/bench/score.py`` scores: one ``<Case>.csv`` per pair with the
moving (source) landmarks mapped into fixed (target) pixels, and ``times.csv`` (``Case,seconds``).
Aggregates use the scorer's definitions; a pair that failed is scored with the identity, as there.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from .. import transforms
from ..errors import HistoAffineError, InputError
from ..files.atomic import atomic_write, write_json
from ..files.images import read_pair
from ..files.pixel_size import pixel_size_um
from ..files.tables import Pair, read_landmarks, write_landmarks
from ..registration.options import RegistrationOptions
from ..registration.pipeline import register
from . import metrics

_ROW = ("rtre_median", "rtre_mean", "rtre_max", "success", "robustness", "initial_rtre_median",
        "initial_rtre_mean", "initial_rtre_max", "diagonal", "seconds", "rotation_deg", "flipped",
        "ncc_before", "ncc_after", "confidence", "flagged", "pose_margin", "verdict")


def _prefixed(prefix: str, stats: metrics.LandmarkStats) -> dict:
    return {f"{prefix}rtre_{k}": getattr(stats, f"rtre_{k}") for k in ("median", "mean", "max")}


class BatchMode(str, Enum):
    """What a table run is for: ``EVALUATE`` scores every pair against its landmarks (which it needs);
    ``REGISTER`` writes every pair's transform (``<Case>.json``, the CLI's transform file format) and
    scores the pairs that have landmarks."""

    EVALUATE = "evaluate"
    REGISTER = "register"


def evaluate_pair(pair: Pair, out_dir, options: RegistrationOptions | None = None, *,
                  mode: BatchMode = BatchMode.EVALUATE) -> dict:
    """Register one pair, write ``out_dir/<Case>.csv`` (and ``<Case>.json`` in REGISTER mode), return its row.

    Never raises for per-pair problems: the row's ``error`` holds the message and no ``<Case>.csv``
    is left behind (a stale one is removed first).
    """
    options = options or RegistrationOptions()
    save_transform = mode is BatchMode.REGISTER
    row = {"Case": pair.case, **dict.fromkeys(_ROW, float("nan")), "success": False}
    result_csv = Path(out_dir) / f"{pair.case}.csv"
    result_json = Path(out_dir) / f"{pair.case}.json"
    error = ""
    try:
        result_csv.unlink(missing_ok=True)
        if save_transform:
            result_json.unlink(missing_ok=True)
        scored = bool(pair.moving_landmarks and pair.fixed_landmarks)
        if mode is BatchMode.EVALUATE and not scored:
            raise InputError(f"case {pair.case} has no source or target landmarks")
        if scored:
            source, target = read_landmarks(pair.moving_landmarks), read_landmarks(pair.fixed_landmarks)
        moving, fixed = read_pair(pair.moving_image, pair.fixed_image, options.working_size)
        diagonal = metrics.image_diagonal(fixed.full_shape)
        if scored:
            row.update(_prefixed("initial_", metrics.landmark_stats(source, target, diagonal)), diagonal=diagonal)
        result = register(moving, fixed, options)
        sizes = {"moving_pixel_size_um": pixel_size_um(pair.moving_image),
                 "fixed_pixel_size_um": pixel_size_um(pair.fixed_image)}
        if save_transform:
            paths = {"moving_image": pair.moving_image, "fixed_image": pair.fixed_image,
                     "moving_landmarks": pair.moving_landmarks, "fixed_landmarks": pair.fixed_landmarks}
            write_json(result_json, {**result.to_dict(), **paths, **sizes})
        if scored:
            warped = transforms.apply_to_points(result.matrix, source)
            write_landmarks(result_csv, warped)
            row.update(metrics.landmark_stats(warped, target, diagonal, initial_xy=source).as_dict())
            if all(sizes.values()):  # both slides calibrated: TRE in the fixed slide's µm (no column otherwise)
                microns = metrics.tre_um(warped, target, sizes["fixed_pixel_size_um"])
                row.update(tre_median_um=float(np.median(microns)), tre_max_um=float(microns.max()))
        row.update(seconds=result.seconds, rotation_deg=result.rotation_deg, flipped=result.flipped,
                   ncc_before=result.ncc_before, ncc_after=result.ncc_after, confidence=result.verdict.confidence,
                   flagged=result.verdict.flagged, pose_margin=result.verdict.margin, verdict=result.verdict.reason,
                   largest_pieces=result.largest_pieces,
                   **{f"seconds_{stage.replace(' ', '_')}": t for stage, t in result.timings.items()})
    except HistoAffineError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad pair must not stop a table
        error = f"{type(exc).__name__}: {exc}"
    return {**row, "error": error}


def summarize(results: pd.DataFrame) -> dict:
    """Aggregates as in score.py: failed pairs count with their identity (initial) rTRE."""
    median = results["rtre_median"].fillna(results["initial_rtre_median"])
    largest = results["rtre_max"].fillna(results["initial_rtre_max"])
    return {"n": len(results), "errors": int((results["error"] != "").sum()),
            "success_pct": 100.0 * results["success"].astype(bool).mean(),
            "MMrTRE": median.median(), "AMrTRE": median.mean(), "mean_max_rTRE": largest.mean(),
            "median_s": results["seconds"].median(),
            "flagged": int(results["flagged"].fillna(False).astype(bool).sum()),
            "median_TRE_um": results["tre_median_um"].median() if "tre_median_um" in results else float("nan")}


def format_summary(summary: dict) -> str:
    """Markdown table of :func:`summarize`'s numbers."""
    rows = [("pairs", f"{summary['n']}"), ("errors", f"{summary['errors']}"),
            ("success [%] (median rTRE ≤ 0.02)", f"{summary['success_pct']:.1f}"),
            ("MMrTRE", f"{summary['MMrTRE']:.4f}"), ("AMrTRE", f"{summary['AMrTRE']:.4f}"),
            ("mean max rTRE", f"{summary['mean_max_rTRE']:.4f}"), ("median seconds", f"{summary['median_s']:.3f}"),
            ("flagged", f"{summary['flagged']}")]
    if not np.isnan(summary.get("median_TRE_um", float("nan"))):  # only where calibrated pairs were scored
        rows.append(("median TRE [µm] (calibrated pairs)", f"{summary['median_TRE_um']:.2f}"))
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]) + "\n"


def _landmark_rtre(pairs: list[Pair], results: pd.DataFrame, out_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every landmark's rTRE before and after registration (identity where a pair failed)."""
    before, after = [], []
    for pair, diagonal in zip(pairs, results["diagonal"]):
        if np.isnan(diagonal) or not (pair.moving_landmarks and pair.fixed_landmarks):
            continue
        source, target = read_landmarks(pair.moving_landmarks), read_landmarks(pair.fixed_landmarks)
        result_csv = out_dir / f"{pair.case}.csv"
        warped = read_landmarks(result_csv) if result_csv.is_file() else source
        before.append(metrics.tre(source, target) / diagonal)
        after.append(metrics.tre(warped, target) / diagonal)
    return np.concatenate(before or [[]]), np.concatenate(after or [[]])


def plot_rtre_histogram(before: np.ndarray, after: np.ndarray, path) -> None:
    """Cumulative histogram of landmark rTRE, initial vs registered, log x-axis (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for values, label in ((before, "initial"), (after, "registered")):
        x = np.sort(np.maximum(values, 1e-5))
        ax.step(x, np.arange(1, len(x) + 1) / max(len(x), 1), where="post", label=label)
    ax.axvline(metrics.SUCCESS_RTRE, color="grey", linestyle=":", label=f"rTRE = {metrics.SUCCESS_RTRE}")
    ax.set(xscale="log", xlabel="rTRE", ylabel="fraction of landmarks", ylim=(0, 1))
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png")


def results_frame(pairs: list[Pair], rows: list[dict]) -> pd.DataFrame:
    """Rows (any order, one per case) as the results table: in the order of ``pairs``, ``error`` last."""
    by_case = {row["Case"]: row for row in rows}
    results = pd.DataFrame([by_case[p.case] for p in pairs if p.case in by_case])
    return results[[c for c in results.columns if c != "error"] + ["error"]]


def write_outputs(pairs_csv, pairs: list[Pair], rows: list[dict], out_dir, *, partial: bool = False) -> pd.DataFrame:
    """Write ``times.csv``, ``results.csv``, ``summary.md`` and ``rtre_histogram.png`` for finished rows.

    The one writer of the serial and the distributed evaluation; ``partial`` writes ``results.csv`` only
    (progress that ``--resume`` can pick up after an interruption).
    """
    out = Path(out_dir)
    results = results_frame(pairs, rows)
    with atomic_write(out / "results.csv") as f:
        results.to_csv(f, index=False)
    if partial:
        return results
    with atomic_write(out / "times.csv") as f:
        results[["Case", "seconds"]].to_csv(f, index=False)
    failed = results.loc[results["error"] != "", ["Case", "error"]]
    flagged = results.loc[results["flagged"].fillna(False).astype(bool), ["Case", "confidence", "verdict"]]
    with atomic_write(out / "summary.md") as f:
        f.write(f"# Evaluation of {Path(pairs_csv).resolve()}\n\n{format_summary(summarize(results))}")
        f.writelines(["\n## Flagged: check these by eye\n\n"] + [f"- {c}: confidence {p:.2f}, {v}\n"
                                                                  for c, p, v in flagged.itertuples(index=False)]
                     if len(flagged) else [])
        f.writelines(["\n## Errors\n\n"] + [f"- {c}: {e}\n" for c, e in failed.itertuples(index=False)]
                     if len(failed) else [])
    done = [p for p in pairs if p.case in set(results["Case"])]
    plot_rtre_histogram(*_landmark_rtre(done, results, out), out / "rtre_histogram.png")
    return results
