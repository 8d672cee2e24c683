"""Whole-slide images: tile-level lazy reads of pyramid levels and full-resolution warps to OME-TIFF (no napari).

Reading
-------
A pyramid level stored as one chunked (tiled or stripped) TIFF page is read tile by tile: the byte ranges
of only the tiles a region touches are read (``page.dataoffsets`` / ``page.databytecounts``) and decoded
with tifffile's own decoder (``page.decode``), so any part of a 100k-pixel level costs a few tiles.
:func:`open_level` wraps such a level as a dask array whose chunks are whole TIFF tiles (several per
chunk). Levels in another layout (several pages, planar samples, volumes) fall back to one chunk.

Warping
-------
:func:`warp_to_ome_tiff` applies a registration matrix (moving → fixed full-resolution pixels, see
:mod:`napari_histoaffine.transforms`) to a moving slide and writes a tiled, pyramidal OME-TIFF on the fixed
image's grid. Every output level is resampled straight from the moving pyramid (the coarsest moving level
that is still at least as fine as the output level, pre-averaged by an integer factor where it is much
finer), one output block at a time, so memory holds a block, the moving pixels it needs and a bounded
cache of decoded moving tiles — never a level.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from . import io
from .errors import InputError
from .transforms import compose, invert, resample_matrix, sample_bilinear, scaling, translation, xy_to_rowcol

CHUNK = 1024  # target side of dask chunks (rounded to whole tiles)
WRITE_TILE = 256


# ---------------------------------------------------------------------------------------------- reading

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
    decoded tiles (useful when neighbouring regions share tiles, as in a warp).
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
        self.decoded = 0  # number of tiles decoded (for tests and benchmarks)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._cache.clear()
        self._cached = 0

    def _decode(self, fh, index: int) -> np.ndarray | None:
        offset, count = int(self.offsets[index]), int(self.counts[index])
        data = None
        if offset and count:
            fh.seek(offset)
            data = fh.read(count)
        tile = self._decode_segment(data, index, **self.decode_args)[0]
        self.decoded += 1
        return None if tile is None else tile.reshape(tile.shape[1], tile.shape[2], -1)

    def _tile(self, fh, index: int) -> np.ndarray | None:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        tile = self._decode(fh, index)
        if self.cache_bytes:
            self._cache[index] = tile
            self._cached += 0 if tile is None else tile.nbytes
            while self._cached > self.cache_bytes and len(self._cache) > 1:
                old = self._cache.popitem(last=False)[1]
                self._cached -= 0 if old is None else old.nbytes
        return tile

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` (clipped to the level) in the layout of :func:`io.read_image`."""
        y0, x0 = max(int(y0), 0), max(int(x0), 0)
        y1, x1 = min(int(y1), self.shape[0]), min(int(x1), self.shape[1])
        out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), self.samples), self.dtype)
        th, tw = self.chunk
        fh = self._fh if self._fh is not None else open(self.path, "rb")  # noqa: SIM115
        try:
            for ty in range(y0 // th, (y1 - 1) // th + 1 if y1 > y0 else 0):
                for tx in range(x0 // tw, (x1 - 1) // tw + 1 if x1 > x0 else 0):
                    tile = self._tile(fh, ty * self.grid[1] + tx)
                    if tile is None:
                        continue
                    ty0, tx0 = ty * th, tx * tw
                    a0, a1 = max(y0, ty0), min(y1, ty0 + tile.shape[0])
                    b0, b1 = max(x0, tx0), min(x1, tx0 + tile.shape[1])
                    out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = tile[a0 - ty0:a1 - ty0, b0 - tx0:b1 - tx0]
        finally:
            if fh is not self._fh:
                fh.close()
        return out if len(self.shape) == 3 else out[..., 0]


def _page_source(path, tif, level: int, **options):
    """:class:`TileSource` for ``level`` of the first series, or None when it is not one chunked 2-D page."""
    levels = io._tiff_levels(tif, path)
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
    """One region reader per pyramid level of ``path``, largest first (:class:`TileSource` or :class:`ArraySource`).

    Levels that cannot be split into tiles are decoded whole (as :func:`io.read_image` would).
    """
    p = io._check_exists(path)
    if not io._is_tiff(p):
        data = io._read_flat(p)
        return [ArraySource(data, data.shape)]
    try:
        with tifffile.TiffFile(p) as tif:
            levels = io._tiff_levels(tif, p)
            full = levels[0][1][2]
            sources = []
            for i in range(len(levels)):
                source = _page_source(p, tif, i, cache_bytes=cache_bytes, keep_open=keep_open)
                if source is None:
                    source = ArraySource(io._arrange(levels[i][0].asarray(), levels[i][1]), full)
                sources.append(source)
            return sources
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for corrupt files
        raise InputError(f"Cannot read image {p}: {io._one_line(exc)}") from exc


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
            region = io._read_tiff_level(self.path, self.level)  # whole level: tifffile's threaded decoder
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
        lvl, layout = io._tiff_levels(tif, p)[level]
        shape, dtype = layout[2], lvl.dtype
    st = os.stat(p)
    name = "histoaffine-level-" + tokenize(p, st.st_mtime_ns, st.st_size, level)
    if source is None:
        read = dask.delayed(io._read_tiff_level, pure=True)
        return da.from_delayed(read(p, level), shape=shape, dtype=dtype, name=name)
    th, tw = source.chunk
    chunks = (th * max(1, round(chunk / th)), tw * max(1, round(chunk / tw)), *shape[2:])
    return da.from_array(_LazyLevel(p, level, shape, dtype), chunks=chunks, name=name, asarray=False,
                         fancy=False, meta=np.empty((0,) * len(shape), dtype))


def image_shape(path) -> tuple[int, int]:
    """Full-resolution (rows, cols) of an image, from the TIFF header without decoding pixels when possible."""
    p = io._check_exists(path)
    if not io._is_tiff(p):
        return tuple(io._read_flat(p).shape[:2])
    try:
        with tifffile.TiffFile(p) as tif:
            return tuple(io._tiff_levels(tif, p)[0][1][2][:2])
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"Cannot read image {p}: {io._one_line(exc)}") from exc


# ---------------------------------------------------------------------------------------------- warping

def pyramid_shapes(shape, smallest: int = WRITE_TILE) -> list[tuple[int, int]]:
    """Level shapes (rows, cols), halving (rounding up) until the long side is at most ``smallest``."""
    shapes = [tuple(int(v) for v in shape[:2])]
    while max(shapes[-1]) > smallest:
        shapes.append(tuple(-(-v // 2) for v in shapes[-1]))
    return shapes


def choose_level(sources, out_to_moving: np.ndarray) -> tuple[int, int]:
    """Moving level to sample for an output grid, and the integer pre-averaging factor for that level.

    ``out_to_moving`` maps output pixels to full-resolution moving pixels. The chosen level is the coarsest
    whose pixels are no larger than the output's finest sampling step (the smallest singular value of the
    linear part); when that level is still ≥ 2× finer, it is block-averaged by the integer factor first.
    """
    step = float(np.linalg.svd(np.asarray(out_to_moving, float)[:2, :2], compute_uv=False).min())
    best, best_size = 0, 1.0
    for i, source in enumerate(sources):
        size = max(f / s for f, s in zip(source.full_shape, source.shape[:2]))
        if size <= step * 1.01 and size > best_size:
            best, best_size = i, size
    return best, max(1, int(math.floor(step / best_size + 1e-6)))


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def warp_block(source, block_to_moving: np.ndarray, shape, *, factor: int = 1, order: int = 1,
               background=0.0, dtype=None) -> np.ndarray:
    """Warp the moving pixels one output block needs: ``block_to_moving`` maps block pixels to ``source``'s pixels.

    Reads only the bounding box of the block's footprint (plus the interpolation margin) from ``source``.
    Outside the moving image the block is ``background`` (a value, or one per channel).
    """
    rows, cols = int(shape[0]), int(shape[1])
    channels = source.shape[2:]
    dtype = np.dtype(dtype or source.dtype)
    corners = np.array([[0, 0, 1], [cols - 1, 0, 1], [0, rows - 1, 1], [cols - 1, rows - 1, 1]], float)
    pts = corners @ np.asarray(block_to_moving, float)[:2].T
    lo = np.floor(pts.min(axis=0)).astype(np.int64) - 1
    hi = np.floor(pts.max(axis=0)).astype(np.int64) + 3
    if factor > 1:
        lo, hi = (lo // factor) * factor, -(-hi // factor) * factor
    x0, y0 = (max(int(v), 0) for v in lo)
    x1, y1 = min(int(hi[0]), source.shape[1]), min(int(hi[1]), source.shape[0])
    fill = np.asarray(background, np.float32)
    out = np.full((rows, cols, *channels), fill, np.float32)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return _to_dtype(out, dtype)
    region = source.read(y0, y1, x0, x1)
    matrix = compose(block_to_moving, translation(-x0, -y0))
    if factor > 1:
        h, w = region.shape[0] // factor, region.shape[1] // factor
        if h < 1 or w < 1:
            return _to_dtype(out, dtype)
        region = region[:h * factor, :w * factor].reshape(h, factor, w, factor, *channels).mean(axis=(1, 3),
                                                                                                    dtype=np.float32)
        # reduced pixel i covers region pixels factor*i … factor*i + factor - 1
        half = (factor - 1) / 2.0
        matrix = compose(matrix, invert(compose(scaling(factor), translation(half, half))))
    if order == 1:
        return _to_dtype(sample_bilinear(region, matrix, (rows, cols), fill), dtype)
    rc = xy_to_rowcol(matrix)
    planes = [region] if region.ndim == 2 else [region[..., c] for c in range(region.shape[-1])]
    fills = np.broadcast_to(fill, (len(planes),))
    warped = [ndimage.affine_transform(plane, rc[:2, :2], offset=rc[:2, 2], output_shape=(rows, cols), order=order,
                                       cval=float(value), mode="constant", output=np.float32)
              for plane, value in zip(planes, fills)]
    out = warped[0] if region.ndim == 2 else np.stack(warped, axis=-1)
    return _to_dtype(out, dtype)


def _level_tiles(sources, matrix, full_shape, level_shape, tile: int, write_tile: int, order: int, background,
                 dtype, tick: Callable[[int], None]) -> Iterator[np.ndarray]:
    """Write tiles of one output level in row-major order, computed ``write_tile`` rows × ``tile`` cols at a time."""
    out_to_full = resample_matrix(level_shape, full_shape)
    out_to_moving = compose(out_to_full, invert(matrix))
    index, factor = choose_level(sources, out_to_moving)
    source = sources[index]
    to_level = invert(resample_matrix(source.shape, source.full_shape))
    rows, cols = level_shape
    width = max(write_tile, tile // write_tile * write_tile)
    for r0 in range(0, rows, write_tile):
        for c0 in range(0, cols, width):
            block_w = min(width, -(-(cols - c0) // write_tile) * write_tile)
            block_to_moving = compose(translation(c0, r0), out_to_moving, to_level)
            block = warp_block(source, block_to_moving, (write_tile, block_w), factor=factor, order=order,
                               background=background, dtype=dtype)
            for t0 in range(0, block_w, write_tile):
                yield block[:, t0:t0 + write_tile]
            tick(write_tile * block_w)


def slide_background(sources) -> np.ndarray:
    """A slide's own background colour: the per-channel median of the border pixels of its smallest level."""
    smallest = sources[-1]
    pixels = np.asarray(smallest.read(0, smallest.shape[0], 0, smallest.shape[1]), np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


def warp_to_ome_tiff(moving_path, matrix, fixed_shape, out_path, tile: int = 1024, *, write_tile: int = WRITE_TILE,
                     compression: str | None = "auto", quality: int = 90, order: int = 1, background="auto",
                     cache_mb: int = 128, progress: Callable[[float], None] | None = None) -> list[tuple[int, int]]:
    """Warp the full-resolution moving image onto a ``fixed_shape`` grid and write a tiled pyramidal OME-TIFF.

    ``matrix`` maps moving to fixed full-resolution pixels (a registration result). Output tiles are
    ``write_tile`` px; they are computed ``tile`` px wide at a time. ``compression`` "auto" is JPEG
    (``quality``) for 8-bit gray/RGB and zlib otherwise; None writes uncompressed. The file is written
    to a temporary name and renamed when complete. ``progress`` receives the fraction of output pixels
    done. Where the moving slide has no pixels the output is ``background``: "auto" is the slide's own
    background colour (see :func:`slide_background`; white on a bright-field slide), or a value, or
    one value per channel. Returns the shapes of the written levels.
    """
    if write_tile % 16 or write_tile < 16:
        raise InputError(f"write_tile must be a multiple of 16, got {write_tile}")
    matrix = np.asarray(matrix, float)
    if matrix.shape != (3, 3) or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        raise InputError("the transform must be a finite, invertible 3x3 matrix")
    full_shape = tuple(int(v) for v in fixed_shape[:2])
    if min(full_shape) < 1:
        raise InputError(f"invalid output shape {full_shape}")
    sources = level_sources(moving_path, cache_bytes=cache_mb << 20, keep_open=True)
    try:
        first = sources[0]
        dtype, channels = np.dtype(first.dtype), first.shape[2:]
        fill = slide_background(sources) if isinstance(background, str) and background == "auto" else background
        if compression == "auto":
            compression = "jpeg" if dtype == np.uint8 and channels in ((), (3,)) else "zlib"
        options = {"tile": (write_tile, write_tile), "dtype": dtype, "compression": compression,
                   "buffersize": 32 << 20,  # tifffile encodes this many bytes of tiles at a time
                   "photometric": "rgb" if channels and channels[0] in (3, 4) else "minisblack"}
        if compression == "jpeg":
            options["compressionargs"] = {"level": int(quality)}
        shapes = pyramid_shapes(full_shape, write_tile)
        total = float(sum(-(-r // write_tile) * write_tile * -(-c // write_tile) * write_tile for r, c in shapes))
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(min(done[0] / total, 1.0))

        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_write(out_path, "wb") as f, tifffile.TiffWriter(f, bigtiff=True, ome=True) as tif:
            for k, shape in enumerate(shapes):
                tiles = _level_tiles(sources, matrix, full_shape, shape, tile, write_tile, order, fill, dtype, tick)
                extra = ({"subifds": len(shapes) - 1, "software": "napari-histoaffine",
                          "metadata": {"axes": "YXS" if channels else "YX", "Name": Path(out_path).name}}
                         if k == 0 else {"subfiletype": 1})
                tif.write(tiles, shape=(*shape, *channels), **options, **extra)
    finally:
        for source in sources:
            if isinstance(source, TileSource):
                source.close()
    return shapes
