"""Batches of registrations, serially or as tasks on a dask.distributed cluster (no napari here).

:func:`run_batch` runs :func:`evaluate_pair` for every pair of a table, in this process, on a
local cluster (``workers``: processes with one thread each) or on an existing cluster (``scheduler``
address; the workers must see the same file paths). Rows are gathered as they complete; a pair that
fails — even one that kills its worker — becomes a row with an ``error``, never a failed batch.
``results.csv`` is rewritten as rows arrive, so ``resume`` can skip finished pairs after an
interruption. The outputs are those of :func:`evaluate_table`, written by the same function,
in the table's order, so the table equals the serial run's.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..files.tables import Pair, read_pairs_table
from .evaluate import _ROW, evaluate_pair, write_outputs

PARTIAL_EVERY_S = 5.0


def finished_rows(pairs: list[Pair], out_dir, *, save_transform: bool = False) -> dict[str, dict]:
    """Rows of an earlier run to keep: cases without error whose output file exists (``<Case>.json`` for
    transform batches, ``<Case>.csv`` otherwise) and whose row is in ``results.csv``."""
    out = Path(out_dir)
    path = out / "results.csv"
    if not path.is_file():
        return {}
    try:
        old = pd.read_csv(path, keep_default_na=False, na_values=[""], float_precision="round_trip",
                          dtype={"Case": str})
    except Exception:  # noqa: BLE001 - an unreadable table just means nothing to resume
        return {}
    if "Case" not in old.columns or "error" not in old.columns:
        return {}
    old["error"] = old["error"].fillna("").astype(str)
    kept = {}
    for record in old.to_dict("records"):
        case = str(record["Case"])
        pair = next((p for p in pairs if p.case == case), None)
        if pair is None or record["error"]:
            continue
        scored = bool(pair.moving_landmarks and pair.fixed_landmarks)
        needed = ([out / f"{case}.json"] if save_transform else []) + ([out / f"{case}.csv"] if scored else [])
        if needed and all(f.is_file() for f in needed):
            record["success"] = bool(record.get("success", False))
            kept[case] = {k: (v if not (isinstance(v, float) and np.isnan(v)) else float("nan"))
                          for k, v in record.items()}
    return kept


def _client(workers: int | None, scheduler: str | None):
    """A dask client and the cluster it started (None for an existing scheduler)."""
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def run_batch(pairs_csv, out_dir, *, workers: int | None = None, scheduler: str | None = None,
              resume: bool = False, require_landmarks: bool = True, save_transform: bool = False,
              progress: bool = True, **register_options) -> pd.DataFrame:
    """Evaluate (or, with ``save_transform`` and optional landmarks, just register) every pair of a table.

    Serial in this process unless ``workers`` (local cluster of that many processes) or ``scheduler``
    (address of a running cluster) is given. Writes what :func:`evaluate_table` writes, plus
    ``<Case>.json`` transforms with ``save_transform``.
    """
    pairs = read_pairs_table(pairs_csv, require_landmarks=require_landmarks)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = finished_rows(pairs, out, save_transform=save_transform) if resume else {}
    todo = [p for p in pairs if p.case not in rows]
    options = {"require_landmarks": require_landmarks, "save_transform": save_transform, **register_options}
    bar = tqdm(total=len(todo), desc="evaluate", unit="pair", disable=not progress)
    last = time.monotonic()

    def add(row: dict) -> None:
        nonlocal last
        rows[row["Case"]] = row
        bar.update()
        if time.monotonic() - last > PARTIAL_EVERY_S:
            write_outputs(pairs_csv, pairs, list(rows.values()), out, partial=True)
            last = time.monotonic()

    try:
        if todo and (workers or scheduler):
            _run_distributed(todo, out, workers, scheduler, options, add)
        else:
            for pair in todo:
                add(evaluate_pair(pair, out, **options))
    finally:
        bar.close()
        if rows and len(rows) < len(pairs):  # interrupted: keep what is done for --resume
            write_outputs(pairs_csv, pairs, list(rows.values()), out, partial=True)
    return write_outputs(pairs_csv, pairs, list(rows.values()), out)


def _run_distributed(todo: list[Pair], out: Path, workers, scheduler, options: dict, add) -> None:
    from distributed import as_completed

    client, cluster = _client(workers, scheduler)
    try:
        futures = {client.submit(evaluate_pair, pair, str(out.resolve()), pure=False, **options): pair
                   for pair in todo}
        for future in as_completed(futures):
            pair = futures.pop(future)
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died (e.g. out of memory) fails one pair
                row = {"Case": pair.case, **dict.fromkeys(_ROW, float("nan")), "success": False,
                       "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
            add(row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
