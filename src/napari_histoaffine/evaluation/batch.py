"""Batches of registrations, serially or as tasks on a dask.distributed cluster (no napari here).

:func:`batch_steps` runs :func:`evaluate_pair` for every pair of a table, in this process, on a
local cluster (``workers``: processes with one thread each) or on an existing cluster (``scheduler``
address; the workers must see the same file paths). Rows are gathered as they complete; a pair that
fails — even one that kills its worker — becomes a row with an ``error``, never a failed batch.
``results.csv`` is rewritten as rows arrive, so ``resume`` can skip finished pairs after an
interruption. The outputs are written by :func:`write_outputs` in the table's order, so a distributed
run's table equals the serial run's.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from ..files.tables import Pair, read_pairs_table
from ..progress import Progress, run_steps
from ..registration.options import RegistrationOptions
from .evaluate import _ROW, BatchMode, evaluate_pair, write_outputs

PARTIAL_EVERY_S = 5.0


def finished_rows(pairs: list[Pair], out_dir, *, mode: BatchMode = BatchMode.EVALUATE) -> dict[str, dict]:
    """Rows of an earlier run to keep: cases without error whose output files exist (``<Case>.json`` in
    REGISTER mode, ``<Case>.csv`` for scored pairs) and whose row is in ``results.csv``."""
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
        needed = ([out / f"{case}.json"] if mode is BatchMode.REGISTER else []) + ([out / f"{case}.csv"] if scored else [])
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


def batch_steps(pairs_csv, out_dir, options: RegistrationOptions | None = None, *,
                mode: BatchMode = BatchMode.EVALUATE, workers: int | None = None, scheduler: str | None = None,
                resume: bool = False) -> Generator[Progress, None, pd.DataFrame]:
    """Run every pair of a table (see :class:`BatchMode`), yielding progress per finished pair.

    Serial in this process unless ``workers`` (local cluster of that many processes) or ``scheduler``
    (address of a running cluster) is given. Closing the generator stops the batch and keeps what is
    done for ``resume``. Returns the results table (also written to ``out_dir``).
    """
    pairs = read_pairs_table(pairs_csv, require_landmarks=mode is BatchMode.EVALUATE)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = finished_rows(pairs, out, mode=mode) if resume else {}
    todo = [p for p in pairs if p.case not in rows]
    computed = (_distributed_rows(todo, out, options, mode, workers, scheduler) if todo and (workers or scheduler)
                else (evaluate_pair(pair, out, options, mode=mode) for pair in todo))
    last = time.monotonic()
    try:
        for row in computed:
            rows[row["Case"]] = row
            if time.monotonic() - last > PARTIAL_EVERY_S:
                write_outputs(pairs_csv, pairs, list(rows.values()), out, partial=True)
                last = time.monotonic()
            yield Progress(mode.value, len(rows) / len(pairs), f"{row['Case']}: {row['error'] or 'done'}")
    finally:
        computed.close()
        if rows and len(rows) < len(pairs):  # interrupted: keep what is done for resume
            write_outputs(pairs_csv, pairs, list(rows.values()), out, partial=True)
    return write_outputs(pairs_csv, pairs, list(rows.values()), out)


def run_batch(pairs_csv, out_dir, options: RegistrationOptions | None = None, *,
              mode: BatchMode = BatchMode.EVALUATE, workers: int | None = None, scheduler: str | None = None,
              resume: bool = False, on_progress: Callable[[Progress], None] | None = None) -> pd.DataFrame:
    """:func:`batch_steps` run to its end, each progress item sent to ``on_progress``."""
    steps = batch_steps(pairs_csv, out_dir, options, mode=mode, workers=workers, scheduler=scheduler, resume=resume)
    return run_steps(steps, on_progress)


def _distributed_rows(todo: list[Pair], out: Path, options, mode: BatchMode, workers, scheduler) -> Iterator[dict]:
    """Rows of ``todo`` computed as tasks on a dask cluster, in the order they finish."""
    from distributed import as_completed

    client, cluster = _client(workers, scheduler)
    try:
        futures = {client.submit(evaluate_pair, pair, str(out.resolve()), options, mode=mode, pure=False): pair
                   for pair in todo}
        for future in as_completed(futures):
            pair = futures.pop(future)
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died (e.g. out of memory) fails one pair
                row = {"Case": pair.case, **dict.fromkeys(_ROW, float("nan")), "success": False,
                       "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
            yield row
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
