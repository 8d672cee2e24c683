"""Decoding image files into (rows, cols[, C]) arrays: the checks and layouts every reader shares."""
from __future__ import annotations

from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from ..errors import InputError

MIN_SIDE = 16
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def check_exists(path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"File not found: {p}")
    return p


def is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _TIFF_MAGIC


def layout(shape, axes: str | None, path) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
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


def arrange(array, layout):
    squeeze, perm, _ = layout
    return array.squeeze(axis=squeeze).transpose(perm)


def read_flat(path: Path) -> np.ndarray:
    """Non-TIFF image (PNG, JPEG, BMP, ...) read whole, arranged as (rows, cols[, C]).

    imagecodecs keeps 16-bit RGB PNGs and has no decompression-bomb limit for whole-slide JPEGs.
    """
    try:
        data = np.asarray(imagecodecs.imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder failure means an unreadable file
        raise InputError(f"Cannot read image {path}: {one_line(exc)}") from exc
    return arrange(data, layout(data.shape, None, path))


def tiff_levels(tif: tifffile.TiffFile, path):
    """Levels of the first series of an open TIFF, largest first, with their layouts."""
    series = tif.series[0]
    return [(lvl, layout(lvl.shape, lvl.axes, path)) for lvl in series.levels]


def read_tiff_level(path: str, index: int) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        lvl, layout = tiff_levels(tif, path)[index]
        return arrange(lvl.asarray(), layout)
