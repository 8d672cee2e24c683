"""ANHIR tables: landmark CSVs (``,X,Y``) and BIRL pairs tables."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .atomic import atomic_write
from .decode import check_exists, one_line


def _norm(name) -> str:
    return " ".join(str(name).split()).lower()


def read_landmarks(path) -> np.ndarray:
    """ANHIR landmarks (``,X,Y`` CSV) as an ``(n, 2)`` float64 array of ``(x, y)``.

    Read with the ``csv`` module, not pandas: registering a slide pair with its landmarks should not
    pay pandas' import (0.15 s).
    """
    p = check_exists(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f, skipinitialspace=True) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"Cannot read landmarks {p}: {one_line(exc)}") from exc
    cols = {_norm(c): i for i, c in enumerate(rows[0])} if rows else {}
    if "x" not in cols or "y" not in cols:
        raise InputError(f"Landmark file needs columns X and Y (header ',X,Y'): {p}")
    cells = [[row[i].strip() if i < len(row) else "" for i in (cols["x"], cols["y"])] for row in rows[1:]]
    if any("" in pair for pair in cells):
        raise InputError(f"Missing or non-finite landmark coordinates in {p}")
    try:
        points = np.array(cells, np.float64).reshape(-1, 2)
    except ValueError as exc:
        raise InputError(f"Non-numeric landmark coordinates in {p}: {one_line(exc)}") from exc
    if not np.isfinite(points).all():
        raise InputError(f"Missing or non-finite landmark coordinates in {p}")
    return points


def write_landmarks(path, points_xy) -> None:
    """Write ``(n, 2)`` ``(x, y)`` points as an ANHIR landmark CSV (``,X,Y``), atomically."""
    pts = np.asarray(points_xy, np.float64).reshape(-1, 2)
    with atomic_write(path) as f:
        f.write(",X,Y\n")
        f.writelines(f"{i},{x!r},{y!r}\n" for i, (x, y) in enumerate(pts.tolist()))


@dataclass(frozen=True)
class Pair:
    """One registration task: ``moving`` (ANHIR source) is registered onto ``fixed`` (ANHIR target)."""

    case: str
    moving_image: str
    fixed_image: str
    moving_landmarks: str | None
    fixed_landmarks: str | None


_PAIR_COLUMNS = {"moving_image": "Source image", "fixed_image": "Target image",
                 "moving_landmarks": "Source landmarks", "fixed_landmarks": "Target landmarks"}


def read_pairs_table(path, *, require_landmarks: bool = True) -> list[Pair]:
    """ANHIR/BIRL pairs CSV as :class:`Pair` objects; relative paths are taken from the table's folder.

    Without ``require_landmarks`` the landmark columns may be missing (their paths are then None).
    """
    import pandas as pd

    p = check_exists(path)
    try:
        table = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read pairs table {p}: {one_line(exc)}") from exc
    cols = {_norm(c): c for c in table.columns}
    for key, column in _PAIR_COLUMNS.items():
        if _norm(column) not in cols and (require_landmarks or key.endswith("_image")):
            raise InputError(f"Pairs table has no column '{column}': {p}")
    folder = p.resolve().parent

    def resolve(value: str) -> str | None:
        value = value.strip()
        return os.path.normpath(folder / value) if value else None

    pairs = []
    for row_number, row in enumerate(table.to_dict("records")):
        fields = {key: resolve(row.get(cols.get(_norm(col)), "") or "") for key, col in _PAIR_COLUMNS.items()}
        if fields["moving_image"] is None or fields["fixed_image"] is None:
            raise InputError(f"Row {row_number} of pairs table has no source or target image: {p}")
        case = row[cols["case"]].strip() if "case" in cols else ""
        pairs.append(Pair(case=case or str(row_number), **fields))
    if not pairs:
        raise InputError(f"Pairs table has no rows: {p}")
    return pairs
