"""ANHIR tables: landmark CSVs (``,X,Y``) and BIRL pairs tables."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .atomic import atomic_write
from .decode import check_exists, one_line


def _norm(name) -> str:
    return " ".join(str(name).split()).lower()


def read_landmarks(path) -> np.ndarray:
    """ANHIR landmarks (``,X,Y`` CSV) as an ``(n, 2)`` float64 array of ``(x, y)``."""
    import pandas as pd  # imported here: a registration of two images needs no pandas

    p = check_exists(path)
    try:
        table = pd.read_csv(p, skipinitialspace=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read landmarks {p}: {one_line(exc)}") from exc
    cols = {_norm(c): c for c in table.columns}
    if "x" not in cols or "y" not in cols:
        raise InputError(f"Landmark file needs columns X and Y (header ',X,Y'): {p}")
    try:
        points = table[[cols["x"], cols["y"]]].apply(pd.to_numeric).to_numpy(np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"Non-numeric landmark coordinates in {p}: {one_line(exc)}") from exc
    if not np.isfinite(points).all():
        raise InputError(f"Missing or non-finite landmark coordinates in {p}")
    return points.reshape(-1, 2)


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
