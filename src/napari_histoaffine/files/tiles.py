"""Tile-level lazy reads of whole-slide pyramid levels (no napari).

A pyramid level stored as one chunked (tiled or stripped) TIFF page is read tile by tile: the byte ranges
of only the tiles a region touches are read (``page.dataoffsets`` / ``page.databytecounts``) and decoded
with tifffile's own decoder (``page.decode``), so any part of a 100k-pixel level costs a few tiles.
:func:`open_level` wraps such a level as a dask array whose chunks are whole TIFF tiles (of about
:data:`CHUNK` px: napari loads a view's chunks whole, so larger ones stall the display while panning).
Levels in another layout (several pages, planar samples, volumes) fall back to one chunk.
"""
from __future__ import annotations

import math
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from functools import lru_cache

import numpy as np
import tifffile

from ..errors import InputError
from .decode import arrange, check_exists, is_tiff, one_line, read_flat, read_tiff_level, tiff_levels
from .openslide_levels import needs_openslide, openslide_sources

CHUNK = 256  # target side of dask chunks (rounded to whole tiles): what a view at full resolution loads beyond its edges


class ArraySource:
    """Region reads from an array already in memory (flat images, levels tifffile cannot split)."""

    tiled = False

    def __init__(self, data: np.ndarray, full_shape):
        self.data = data
        self.shape = tuple(data.shape)
        self.dtype = data.dtype
        self.full_shape = tuple(int(v) for v in full_shape[:2])

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.data[y0:y1, x0:x1]


class TileSource:
    """Region reads of one chunked single-page TIFF level, decoding only the tiles (or strips) a region needs.

    Holds the page's tile table but no open file unless ``keep_open``; ``cache_bytes`` bounds an LRU cache of
    decoded tiles (useful when neighbouring regions share tiles, as in a warp). A reader that knows its
    regions in advance announces them (:meth:`expect`): a tile is then decoded once and kept exactly until
    its last announced read. Threads may read at once: file reads and the caches are locked, decoding
    (which releases the GIL) is not.
    """

    tiled = True

    def __init__(self, path, page, layout_shape, full_shape, *, cache_bytes: int = 0, keep_open: bool = False):
        self.path = str(path)
        self.page = page
        self.shape = tuple(layout_shape)
        self.full_shape = tuple(int(v) for v in full_shape[:2])
        self.dtype = np.dtype(page.dtype)
        self.offsets = np.asarray(page.dataoffsets, np.int64)
        self.counts = np.asarray(page.databytecounts, np.int64)
        self.decode_args = {"_fullsize": True}
        if page.compression in (6, 7, 34892, 33007):  # JPEG: tables live in the IFD
            self.decode_args.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)
        self._decode_segment = page.decode  # built while the file is open (JPEG decoders inspect it)
        self.samples = int(page.samplesperpixel)
        if page.is_tiled:
            self.chunk = (int(page.tilelength), int(page.tilewidth))
        else:
            self.chunk = (int(min(page.rowsperstrip, page.imagelength)), int(page.imagewidth))
        self.grid = (math.ceil(self.shape[0] / self.chunk[0]), math.ceil(self.shape[1] / self.chunk[1]))
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[int, np.ndarray | None] = OrderedDict()
        self._cached = 0
        self._fh = open(self.path, "rb") if keep_open else None  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()
        self._expected: Counter[int] = Counter()  # announced reads still to come, per tile
        self._kept: dict[int, np.ndarray | None] = {}  # decoded tiles with announced reads to come
        self._decoding: dict[int, Future] = {}  # tiles being decoded by some thread, for the others to wait on
        self.decoded = 0  # number of tiles decoded (for tests and benchmarks)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._cache.clear()
        self._cached = 0
        self._kept.clear()
        self._expected.clear()

    def _tile_indices(self, y0: int, y1: int, x0: int, x1: int) -> Iterator[int]:
        """Indices of the tiles a region (clipped to the level) touches, row by row."""
        y0, x0 = max(int(y0), 0), max(int(x0), 0)
        y1, x1 = min(int(y1), self.shape[0]), min(int(x1), self.shape[1])
        th, tw = self.chunk
        for ty in range(y0 // th, (y1 - 1) // th + 1 if y1 > y0 else 0):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1 if x1 > x0 else 0):
                yield ty * self.grid[1] + tx

    def expect(self, regions) -> None:
        """Announce regions ``(y0, y1, x0, x1)`` that will be read, in any order and any number of threads."""
        with self._lock:
            self._expected.update(i for region in regions for i in self._tile_indices(*region))

    def _count_read(self, index: int) -> None:
        """One read of ``index`` done: forget a kept tile after its last announced read (lock held)."""
        if self._expected[index] > 1:
            self._expected[index] -= 1
        else:
            self._expected.pop(index, None)
            self._kept.pop(index, None)

    def _tile(self, fh, index: int) -> np.ndarray | None:
        offset, count = int(self.offsets[index]), int(self.counts[index])
        with self._lock:
            if index in self._kept:
                tile = self._kept[index]
                self._count_read(index)
                return tile
            if index in self._cache:
                self._cache.move_to_end(index)
                self._count_read(index)
                return self._cache[index]
            decoding = self._decoding.get(index)
            waits = decoding is not None  # another thread decodes this tile now: take its result
            if not waits:
                decoding = self._decoding[index] = Future()
                data = None
                if offset and count:
                    fh.seek(offset)
                    data = fh.read(count)
        if waits:
            tile = decoding.result()
            with self._lock:
                self._count_read(index)
            return tile
        try:
            tile = self._decode_segment(data, index, **self.decode_args)[0]
            tile = None if tile is None else tile.reshape(tile.shape[1], tile.shape[2], -1)
        except BaseException as exc:
            with self._lock:
                self._decoding.pop(index, None)
            decoding.set_exception(exc)
            raise
        with self._lock:
            self._decoding.pop(index, None)
            decoding.set_result(tile)
            self.decoded += 1
            if self._expected[index] > 1:
                self._kept[index] = tile
            elif self.cache_bytes and index not in self._cache:
                self._cache[index] = tile
                self._cached += 0 if tile is None else tile.nbytes
                while self._cached > self.cache_bytes and len(self._cache) > 1:
                    old = self._cache.popitem(last=False)[1]
                    self._cached -= 0 if old is None else old.nbytes
            self._count_read(index)
        return tile

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` (clipped to the level) in the layout of :func:`~napari_histoaffine.files.images.read_image`."""
        y0, x0 = max(int(y0), 0), max(int(x0), 0)
        y1, x1 = min(int(y1), self.shape[0]), min(int(x1), self.shape[1])
        out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), self.samples), self.dtype)
        th, tw = self.chunk
        fh = self._fh if self._fh is not None else open(self.path, "rb")  # noqa: SIM115
        try:
            for index in self._tile_indices(y0, y1, x0, x1):
                tile = self._tile(fh, index)
                if tile is None:
                    continue
                ty0, tx0 = index // self.grid[1] * th, index % self.grid[1] * tw
                a0, a1 = max(y0, ty0), min(y1, ty0 + tile.shape[0])
                b0, b1 = max(x0, tx0), min(x1, tx0 + tile.shape[1])
                out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = tile[a0 - ty0:a1 - ty0, b0 - tx0:b1 - tx0]
        finally:
            if fh is not self._fh:
                fh.close()
        return out if len(self.shape) == 3 else out[..., 0]


def _page_source(path, tif, level: int, **options):
    """:class:`TileSource` for ``level`` of the first series, or None when it is not one chunked 2-D page."""
    levels = tiff_levels(tif, path)
    lvl, layout = levels[level]
    out = layout[2]
    pages = [p for p in lvl.pages if p is not None]
    if len(pages) != 1 or not isinstance(pages[0], tifffile.TiffPage):
        return None
    page = pages[0]
    native = (page.imagelength, page.imagewidth) + ((page.samplesperpixel,) if page.samplesperpixel > 1 else ())
    if (page.imagedepth != 1 or (page.planarconfig == 2 and page.samplesperpixel > 1) or tuple(out) != native
            or len(page.dataoffsets) == 0):
        return None
    return TileSource(path, page, out, levels[0][1][2], **options)


def level_sources(path, *, cache_bytes: int = 0, keep_open: bool = False) -> list:
    """One region reader per pyramid level of ``path``, largest first (:class:`TileSource`, :class:`ArraySource`
    or, for the formats only OpenSlide reads, :class:`~.openslide_levels.OpenSlideSource`).

    Levels that cannot be split into tiles are decoded whole (as :func:`~napari_histoaffine.files.images.read_image` would).
    """
    p = check_exists(path)
    if needs_openslide(p):
        return openslide_sources(p)
    if not is_tiff(p):
        data = read_flat(p)
        return [ArraySource(data, data.shape)]
    try:
        with tifffile.TiffFile(p) as tif:
            levels = tiff_levels(tif, p)
            full = levels[0][1][2]
            sources = []
            for i in range(len(levels)):
                source = _page_source(p, tif, i, cache_bytes=cache_bytes, keep_open=keep_open)
                if source is None:
                    source = ArraySource(arrange(levels[i][0].asarray(), levels[i][1]), full)
                sources.append(source)
            return sources
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for corrupt files
        raise InputError(f"Cannot read image {p}: {one_line(exc)}") from exc


@lru_cache(maxsize=32)
def _cached_source(path: str, level: int, stamp) -> TileSource | None:
    with tifffile.TiffFile(path) as tif:
        return _page_source(path, tif, level)


class _LazyLevel:
    """Array-like view of one TIFF level for ``dask.array.from_array``; reopens the file per read."""

    def __init__(self, path: str, level: int, shape, dtype):
        self.path, self.level = path, level
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows, cols = (k.indices(n)[:2] for k, n in zip(key[:2], self.shape))
        if rows == (0, self.shape[0]) and cols == (0, self.shape[1]):
            region = read_tiff_level(self.path, self.level)  # whole level: tifffile's threaded decoder
        else:
            st = os.stat(self.path)
            region = _cached_source(self.path, self.level, (st.st_mtime_ns, st.st_size)).read(*rows, *cols)
        return region[(slice(None), slice(None), *key[2:])]


def open_level(path, level: int, chunk: int = CHUNK):
    """Level ``level`` of a TIFF as a lazy dask array whose chunks are whole tiles (about ``chunk`` px a side).

    Falls back to one chunk for levels that are not one chunked page.
    """
    import dask
    import dask.array as da
    from dask.base import tokenize

    p = os.path.abspath(path)
    with tifffile.TiffFile(p) as tif:
        source = _page_source(p, tif, level)
        lvl, layout = tiff_levels(tif, p)[level]
        shape, dtype = layout[2], lvl.dtype
    st = os.stat(p)
    name = "histoaffine-level-" + tokenize(p, st.st_mtime_ns, st.st_size, level)
    if source is None:
        read = dask.delayed(read_tiff_level, pure=True)
        return da.from_delayed(read(p, level), shape=shape, dtype=dtype, name=name)
    th, tw = source.chunk
    chunks = (th * max(1, round(chunk / th)), tw * max(1, round(chunk / tw)), *shape[2:])
    return da.from_array(_LazyLevel(p, level, shape, dtype), chunks=chunks, name=name, asarray=False,
                         fancy=False, meta=np.empty((0,) * len(shape), dtype))


def image_shape(path) -> tuple[int, int]:
    """Full-resolution (rows, cols) of an image, from the TIFF header without decoding pixels when possible."""
    p = check_exists(path)
    if needs_openslide(p):
        return openslide_sources(p)[0].full_shape
    if not is_tiff(p):
        return tuple(read_flat(p).shape[:2])
    try:
        with tifffile.TiffFile(p) as tif:
            return tuple(tiff_levels(tif, p)[0][1][2][:2])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read image {p}: {one_line(exc)}") from exc
