"""Slide formats tifffile cannot read (MIRAX, Leica SCN, Ventana BIF, Hamamatsu VMS, ...), through OpenSlide.

Optional: ``pip install 'napari-histoaffine[slides]'`` brings the ``openslide-python`` and
``openslide-bin`` wheels. Levels are read as RGB regions (transparent parts, where a scanner
recorded no tissue, become white) by :class:`OpenSlideSource`, the same region reader interface as
:class:`~napari_histoaffine.files.tiles.TileSource`, so registration, warps and the napari reader
treat these slides like pyramidal TIFFs.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import InputError

OPENSLIDE_SUFFIXES = (".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide")
EXTRA_HINT = "pip install 'napari-histoaffine[slides]'"


def needs_openslide(path) -> bool:
    """Whether ``path`` is a slide format read through OpenSlide (by its suffix)."""
    return str(path).lower().endswith(OPENSLIDE_SUFFIXES)


def open_slide(path):
    """An ``openslide.OpenSlide``; :class:`InputError` naming the extra when OpenSlide is not installed."""
    try:
        import openslide
    except ImportError:
        raise InputError(f"Reading {Path(path).suffix} slides needs OpenSlide: {EXTRA_HINT}") from None
    try:
        return openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as exc:
        raise InputError(f"Cannot read slide {path}: {' '.join(str(exc).split()) or type(exc).__name__}") from None


class OpenSlideSource:
    """Region reads of one level of an OpenSlide slide, as RGB uint8 (rows, cols, 3)."""

    tiled = True
    dtype = np.dtype(np.uint8)

    def __init__(self, slide, level: int):
        self.slide, self.level = slide, level
        cols, rows = slide.level_dimensions[level]
        self.shape = (int(rows), int(cols), 3)
        self.full_shape = (int(slide.dimensions[1]), int(slide.dimensions[0]))
        self.downsample = float(slide.level_downsamples[level])
        self.chunk = (512, 512)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of this level (clipped to it)."""
        y0, x0 = max(int(y0), 0), max(int(x0), 0)
        y1, x1 = min(int(y1), self.shape[0]), min(int(x1), self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 3), np.uint8)
        # OpenSlide places regions by their level-0 top-left corner
        location = (int(round(x0 * self.downsample)), int(round(y0 * self.downsample)))
        rgba = np.asarray(self.slide.read_region(location, self.level, (x1 - x0, y1 - y0)))
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255
        return rgb

    def close(self) -> None:
        """Nothing to release per level: the slide is shared (see :func:`openslide_sources`)."""


@lru_cache(maxsize=8)
def _cached_slide(path: str, stamp):
    return open_slide(path)


def openslide_sources(path) -> list[OpenSlideSource]:
    """One region reader per level, largest first; the slide object is shared and cached per file version."""
    p = Path(path).resolve()
    st = p.stat()
    slide = _cached_slide(str(p), (st.st_mtime_ns, st.st_size))
    return [OpenSlideSource(slide, level) for level in range(slide.level_count)]


class _RegionArray:
    """Array-like view of a region reader for ``dask.array.from_array``."""

    def __init__(self, source: OpenSlideSource):
        self.source = source
        self.shape, self.dtype, self.ndim = source.shape, source.dtype, 3

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows, cols = (k.indices(n)[:2] for k, n in zip(key[:2], self.shape))
        return self.source.read(*rows, *cols)[(slice(None), slice(None), *key[2:])]


def openslide_pyramid(path) -> list:
    """Lazy dask arrays, one per level, largest first, in chunks of 1024 px read on demand."""
    import dask.array as da
    from dask.base import tokenize

    p = Path(path).resolve()
    st = p.stat()
    return [da.from_array(_RegionArray(s), chunks=(1024, 1024, 3), asarray=False, fancy=False,
                          name="histoaffine-openslide-" + tokenize(str(p), st.st_mtime_ns, i),
                          meta=np.empty((0, 0, 0), np.uint8))
            for i, s in enumerate(openslide_sources(p))]
