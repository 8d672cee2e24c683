"""Reading and writing of images, landmarks, pair tables and results (no napari here).

Every file the project writes goes through :func:`atomic_write`, so an interrupted run never
leaves a half-written file in place of a good one.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pandas as pd
import tifffile

from .errors import InputError
from .transforms import resample_matrix

MIN_SIDE = 16
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass(frozen=True)
class ImageLevel:
    """Pixels of one resolution level of an image file and where they sit in level 0."""

    data: np.ndarray
    full_shape: tuple[int, int]
    level: int
    path: str

    @property
    def to_full(self) -> np.ndarray:
        """Matrix from this level's pixel coordinates to level-0 pixel coordinates."""
        return resample_matrix(self.data.shape, self.full_shape)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _check_exists(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"File not found: {p}")
    return p


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def _layout(shape, axes: str | None, path) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """How to turn an array of ``shape`` into (rows, cols) or (rows, cols, C ≤ 4).

    Returns the singleton axes to squeeze, the transpose of the squeezed array and the final shape.
    Raises :class:`InputError` for empty, tiny or non-2-D images.
    """
    shape = tuple(int(n) for n in shape)
    if 0 in shape:
        raise InputError(f"Empty image (shape {shape}): {path}")
    keep = [i for i, n in enumerate(shape) if n != 1]
    if len(keep) == 3:
        yx = [i for i in keep if axes and axes[i] in "YX"]
        channel = next(i for i in keep if i not in yx) if len(yx) == 2 else (
            keep[-1] if shape[keep[-1]] <= 4 else keep[0])
        if shape[channel] > 4:
            raise InputError(f"Not a 2-D image with at most 4 channels (shape {shape}): {path}")
        order = [i for i in keep if i != channel] + [channel]
    elif len(keep) == 2:
        order = keep
    else:
        raise InputError(f"Not a 2-D image with at most 4 channels (shape {shape}): {path}")
    out = tuple(shape[i] for i in order)
    if min(out[:2]) < MIN_SIDE:
        raise InputError(f"Image too small ({out[0]}x{out[1]} px, need {MIN_SIDE} per side): {path}")
    squeeze = tuple(i for i in range(len(shape)) if i not in keep)
    return squeeze, tuple(keep.index(i) for i in order), out


def _arrange(array, layout):
    squeeze, perm, _ = layout
    return array.squeeze(axis=squeeze).transpose(perm)


def _read_flat(path: Path) -> np.ndarray:
    """Non-TIFF image (PNG, JPEG, BMP, ...) read whole, arranged as (rows, cols[, C]).

    imagecodecs keeps 16-bit RGB PNGs and has no decompression-bomb limit for whole-slide JPEGs.
    """
    try:
        data = np.asarray(imagecodecs.imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unreadable file
        raise InputError(f"Cannot read image {path}: {_one_line(exc)}") from exc
    return _arrange(data, _layout(data.shape, None, path))


def _tiff_levels(tif: tifffile.TiffFile, path):
    """Levels of the first series of an open TIFF, largest first, with their layouts."""
    series = tif.series[0]
    return [(lvl, _layout(lvl.shape, lvl.axes, path)) for lvl in series.levels]


def _read_tiff_level(path: str, index: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        lvl, layout = _tiff_levels(tif, path)[index]
        return _arrange(lvl.asarray(), layout)


def read_image(path, max_long_side: int | None = None) -> ImageLevel:
    """Read an image; for pyramidal TIFF/OME-TIFF/SVS only the smallest level with long side ≥ ``max_long_side``.

    Without ``max_long_side``, or when no level is that large, level 0 is read.
    """
    p = _check_exists(path)
    if not _is_tiff(p):
        data = _read_flat(p)
        return ImageLevel(data, tuple(data.shape[:2]), 0, str(p))
    try:
        with tifffile.TiffFile(p) as tif:
            levels = _tiff_levels(tif, p)
            index = 0
            if max_long_side is not None:
                big = [i for i, (_, (_, _, out)) in enumerate(levels) if max(out[:2]) >= max_long_side]
                index = min(big, key=lambda i: max(levels[i][1][2][:2]), default=0)
            lvl, layout = levels[index]
            data = _arrange(lvl.asarray(), layout)
            full = tuple(levels[0][1][2][:2])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for corrupt files
        raise InputError(f"Cannot read image {p}: {_one_line(exc)}") from exc
    return ImageLevel(data, full, index, str(p))


def open_pyramid(path) -> list:
    """Lazy dask arrays, one per pyramid level, largest first (one element for a flat image).

    Chunks of tiled or stripped levels are whole TIFF tiles (see :func:`slides.open_level`): showing or
    reading part of a level decodes only the tiles it touches; each read reopens the file, so no handle
    stays open.
    """
    import dask.array as da

    from .slides import open_level

    p = _check_exists(path)
    if not _is_tiff(p):
        return [da.from_array(_read_flat(p))]
    try:
        with tifffile.TiffFile(p) as tif:
            count = len(_tiff_levels(tif, p))
        return [open_level(p, i) for i in range(count)]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read image {p}: {_one_line(exc)}") from exc


@contextlib.contextmanager
def atomic_write(path, mode: str = "w"):
    """Open a temporary file beside ``path`` (same suffix); on success fsync and ``os.replace`` it onto ``path``.

    The file object's ``name`` is the temporary path, for writers that need a path rather than a handle.

    On error the temporary file is deleted and any existing ``path`` is left untouched.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.tmp", suffix=target.suffix)
    os.close(fd)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _json_default(obj):
    if isinstance(obj, (np.ndarray, np.generic)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON (numpy arrays and paths allowed), atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=2, default=_json_default)
        f.write("\n")


def write_image(path, array) -> None:
    """Write an image by suffix (PNG/JPEG via imagecodecs, TIFF via tifffile), atomically.

    Float images in [0, 1] become uint8 for PNG/JPEG, which cannot hold floats.
    """
    array = np.asarray(array)
    suffix = Path(path).suffix.lower()
    if suffix in (".tif", ".tiff"):
        with atomic_write(path, "wb") as f:
            tifffile.imwrite(f, array, photometric="rgb" if array.ndim == 3 and array.shape[-1] in (3, 4) else None)
        return
    if suffix not in (".png", ".jpg", ".jpeg"):
        raise InputError(f"Unsupported image suffix {suffix!r} (use .png, .jpg or .tif): {path}")
    if array.dtype.kind == "f":
        if array.size and not (np.nanmin(array) >= 0.0 and np.nanmax(array) <= 1.0):
            raise InputError(f"Float image outside [0, 1] cannot be written as {suffix}: {path}")
        array = np.round(np.nan_to_num(array) * 255.0).astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    # PNG at zlib level 1: a fifth of the time of the default for a few per cent more bytes
    encoded = imagecodecs.png_encode(array, level=1) if suffix == ".png" else imagecodecs.jpeg8_encode(array, level=95)
    with atomic_write(path, "wb") as f:
        f.write(encoded)


def _norm(name) -> str:
    return " ".join(str(name).split()).lower()


def read_landmarks(path) -> np.ndarray:
    """ANHIR landmarks (``,X,Y`` CSV) as an ``(n, 2)`` float64 array of ``(x, y)``."""
    p = _check_exists(path)
    try:
        table = pd.read_csv(p, skipinitialspace=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read landmarks {p}: {_one_line(exc)}") from exc
    cols = {_norm(c): c for c in table.columns}
    if "x" not in cols or "y" not in cols:
        raise InputError(f"Landmark file needs columns X and Y (header ',X,Y'): {p}")
    try:
        points = table[[cols["x"], cols["y"]]].apply(pd.to_numeric).to_numpy(np.float64)
    except (ValueError, TypeError) as exc:
        raise InputError(f"Non-numeric landmark coordinates in {p}: {_one_line(exc)}") from exc
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
    p = _check_exists(path)
    try:
        table = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read pairs table {p}: {_one_line(exc)}") from exc
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
