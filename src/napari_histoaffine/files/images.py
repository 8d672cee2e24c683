"""Reading and writing whole images (one resolution level at a time) and lazy pyramids (no napari here)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from ..errors import InputError
from ..transforms import resample_matrix
from .atomic import atomic_write
from .decode import arrange, check_exists, is_tiff, one_line, read_flat, tiff_levels
from .openslide_levels import needs_openslide, openslide_pyramid, openslide_sources
from .tiles import open_level


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


def read_image(path, max_long_side: int | None = None) -> ImageLevel:
    """Read an image; for pyramids (TIFF, OME-TIFF, SVS, NDPI, and MRXS, SCN, BIF, VMS through OpenSlide) only
    the smallest level with long side ≥ ``max_long_side``.

    Without ``max_long_side``, or when no level is that large, level 0 is read.
    """
    p = check_exists(path)
    if needs_openslide(p):
        return _read_openslide_level(p, max_long_side)
    if not is_tiff(p):
        data = read_flat(p)
        return ImageLevel(data, tuple(data.shape[:2]), 0, str(p))
    try:
        with tifffile.TiffFile(p) as tif:
            levels = tiff_levels(tif, p)
            index = 0
            if max_long_side is not None:
                big = [i for i, (_, (_, _, out)) in enumerate(levels) if max(out[:2]) >= max_long_side]
                index = min(big, key=lambda i: max(levels[i][1][2][:2]), default=0)
            lvl, layout = levels[index]
            data = arrange(lvl.asarray(), layout)
            full = tuple(levels[0][1][2][:2])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for corrupt files
        raise InputError(f"Cannot read image {p}: {one_line(exc)}") from exc
    return ImageLevel(data, full, index, str(p))


def read_pair(moving_path, fixed_path, max_long_side: int | None) -> tuple[ImageLevel, ImageLevel]:
    """Both images of a pair, from pyramids only the smallest level that covers ``max_long_side`` (the
    working size of a registration)."""
    return read_image(moving_path, max_long_side), read_image(fixed_path, max_long_side)


def _read_openslide_level(path: Path, max_long_side: int | None) -> ImageLevel:
    """:func:`read_image` for the formats only OpenSlide reads: the same level choice."""
    sources = openslide_sources(path)
    big = [i for i, s in enumerate(sources) if max_long_side is not None and max(s.shape[:2]) >= max_long_side]
    index = min(big, key=lambda i: max(sources[i].shape[:2]), default=0)
    source = sources[index]
    return ImageLevel(source.read(0, source.shape[0], 0, source.shape[1]), source.full_shape, index, str(path))


def open_pyramid(path) -> list:
    """Lazy dask arrays, one per pyramid level, largest first (one element for a flat image).

    Chunks of tiled or stripped levels are whole TIFF tiles (see :func:`~.tiles.open_level`): showing or reading
    part of a level decodes only the tiles it touches; each read reopens the file, so no handle
    stays open.
    """
    import dask.array as da

    p = check_exists(path)
    if needs_openslide(p):
        return openslide_pyramid(p)
    if not is_tiff(p):
        return [da.from_array(read_flat(p))]
    try:
        with tifffile.TiffFile(p) as tif:
            count = len(tiff_levels(tif, p))
        return [open_level(p, i) for i in range(count)]
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read image {p}: {one_line(exc)}") from exc


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
