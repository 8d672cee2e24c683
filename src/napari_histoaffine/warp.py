"""Whole-slide warps: a registration applied at full resolution, written as a pyramidal OME-TIFF (no napari).

:func:`warp_steps` applies a registration matrix (moving → fixed full-resolution pixels, see
:mod:`napari_histoaffine.transforms`) to a moving slide and writes a tiled, pyramidal OME-TIFF on the fixed
image's grid. Every output level is resampled straight from the moving pyramid (the coarsest moving level
that is still at least as fine as the output level, pre-averaged by an integer factor where it is much
finer), one output block at a time, so memory holds a block, the moving pixels it needs and a bounded
cache of decoded moving tiles — never a level. A writer thread encodes and writes tiles while the next
block is warped.
"""
from __future__ import annotations

import math
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import tifffile

from .errors import InputError
from .files.atomic import atomic_write
from .files.pixel_size import ome_physical_size
from .files.tiles import TileSource, level_sources
from .progress import Progress, run_steps
from .transforms import compose, invert, resample_matrix, sample_bilinear, scaling, translation, xy_to_rowcol

WRITE_TILE = 256
WARP_THREADS = min(2, os.cpu_count() or 1)  # beyond two, reading and encoding are the limit
QUEUED_TILES = 64  # tiles warped ahead of the writer: 64 RGB 256-px tiles are 12 MB


def pyramid_shapes(shape, smallest: int = WRITE_TILE) -> list[tuple[int, int]]:
    """Level shapes (rows, cols), halving (rounding up) until the long side is at most ``smallest``."""
    shapes = [tuple(int(v) for v in shape[:2])]
    while max(shapes[-1]) > smallest:
        shapes.append(tuple(-(-v // 2) for v in shapes[-1]))
    return shapes


def level_for_warp(sources, out_to_moving: np.ndarray, coarser: float = 1.01) -> tuple[int, int]:
    """Moving level to sample for an output grid, and the integer pre-averaging factor for that level.

    ``out_to_moving`` maps output pixels to full-resolution moving pixels. The chosen level is the coarsest
    whose pixels are no larger than ``coarser`` × the output's finest sampling step (the smallest singular
    value of the linear part); when that level is still ≥ 2× finer, it is block-averaged by the integer
    factor first.
    """
    step = float(np.linalg.svd(np.asarray(out_to_moving, float)[:2, :2], compute_uv=False).min())
    best, best_size = 0, 1.0
    for i, source in enumerate(sources):
        size = max(f / s for f, s in zip(source.full_shape, source.shape[:2]))
        if size <= step * coarser and size > best_size:
            best, best_size = i, size
    return best, max(1, int(math.floor(step / best_size + 1e-6)))


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype, copy=False)


def _footprint(block_to_moving: np.ndarray, shape, factor: int, source_shape) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the region of the source a block reads, its footprint's bounding box plus the
    interpolation margin (whole ``factor`` × ``factor`` cells), clipped to the source."""
    rows, cols = int(shape[0]), int(shape[1])
    corners = np.array([[0, 0, 1], [cols - 1, 0, 1], [0, rows - 1, 1], [cols - 1, rows - 1, 1]], float)
    pts = corners @ np.asarray(block_to_moving, float)[:2].T
    lo = np.floor(pts.min(axis=0)).astype(np.int64) - 1
    hi = np.floor(pts.max(axis=0)).astype(np.int64) + 3
    if factor > 1:
        lo, hi = (lo // factor) * factor, -(-hi // factor) * factor
    x0, y0 = (max(int(v), 0) for v in lo)
    return y0, min(int(hi[1]), source_shape[0]), x0, min(int(hi[0]), source_shape[1])


def warp_block(source, block_to_moving: np.ndarray, shape, *, factor: int = 1, order: int = 1,
               background=0.0, dtype=None) -> np.ndarray:
    """Warp the moving pixels one output block needs: ``block_to_moving`` maps block pixels to ``source``'s pixels.

    Reads only the bounding box of the block's footprint (plus the interpolation margin) from ``source``.
    Outside the moving image the block is ``background`` (a value, or one per channel).
    """
    rows, cols = int(shape[0]), int(shape[1])
    channels = source.shape[2:]
    dtype = np.dtype(dtype or source.dtype)
    y0, y1, x0, x1 = _footprint(block_to_moving, shape, factor, source.shape)
    fill = np.asarray(background, np.float32)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return _to_dtype(np.full((rows, cols, *channels), fill, np.float32), dtype)
    region = source.read(y0, y1, x0, x1)
    matrix = compose(block_to_moving, translation(-x0, -y0))
    if factor > 1:
        h, w = region.shape[0] // factor, region.shape[1] // factor
        if h < 1 or w < 1:
            return _to_dtype(np.full((rows, cols, *channels), fill, np.float32), dtype)
        region = region[:h * factor, :w * factor].reshape(h, factor, w, factor, *channels).mean(axis=(1, 3),
                                                                                                    dtype=np.float32)
        # reduced pixel i covers region pixels factor*i … factor*i + factor - 1
        half = (factor - 1) / 2.0
        matrix = compose(matrix, invert(compose(scaling(factor), translation(half, half))))
    if order == 1:
        return sample_bilinear(region, matrix, (rows, cols), fill, dtype)
    from scipy import ndimage  # imported here: only higher-order warps need it

    rc = xy_to_rowcol(matrix)
    planes = [region] if region.ndim == 2 else [region[..., c] for c in range(region.shape[-1])]
    fills = np.broadcast_to(fill, (len(planes),))
    warped = [ndimage.affine_transform(plane, rc[:2, :2], offset=rc[:2, 2], output_shape=(rows, cols), order=order,
                                       cval=float(value), mode="constant", output=np.float32)
              for plane, value in zip(planes, fills)]
    out = warped[0] if region.ndim == 2 else np.stack(warped, axis=-1)
    return _to_dtype(out, dtype)


def _level_blocks(sources, matrix, full_shape, level_shape, tile: int, write_tile: int, order: int, background,
                  dtype) -> Iterator[tuple[int, Callable[[], np.ndarray]]]:
    """The blocks of one output level in row-major order, about ``tile`` px square (whole write tiles), each
    with the row of blocks (band) it belongs to and a call that warps it.

    Square blocks, rather than one row of tiles at a time, read each moving tile about once: the bounding
    box of a turned block's footprint is less larger than the block the squarer the block is.
    """
    out_to_full = resample_matrix(level_shape, full_shape)
    out_to_moving = compose(out_to_full, invert(matrix))
    # the reduced levels are overviews: a moving level up to 20 % coarser than their grid (a slight blur)
    # saves reading the 4× larger level below it
    index, factor = level_for_warp(sources, out_to_moving, 1.01 if level_shape == tuple(full_shape) else 1.2)
    source = sources[index]
    to_level = invert(resample_matrix(source.shape, source.full_shape))
    rows, cols = level_shape
    side = max(write_tile, tile // write_tile * write_tile)
    blocks = [(band, compose(translation(c0, r0), out_to_moving, to_level),
               (min(side, -(-(rows - r0) // write_tile) * write_tile), min(side, -(-(cols - c0) // write_tile) * write_tile)))
              for band, r0 in enumerate(range(0, rows, side)) for c0 in range(0, cols, side)]
    if isinstance(source, TileSource):  # each moving tile decoded once, kept until its last block has read it
        source.expect([region for _, to_moving, shape in blocks
                       if (region := _footprint(to_moving, shape, factor, source.shape))[1] > region[0]
                       and region[3] > region[2]])
    for band, block_to_moving, shape in blocks:
        yield band, partial(warp_block, source, block_to_moving, shape, factor=factor, order=order,
                            background=background, dtype=dtype)


def _band_tiles(blocks: list[np.ndarray], write_tile: int) -> Iterator[np.ndarray]:
    """The write tiles of one band of blocks, in the row-major order of the TIFF."""
    for r0 in range(0, blocks[0].shape[0], write_tile):
        for block in blocks:
            for c0 in range(0, block.shape[1], write_tile):
                yield block[r0:r0 + write_tile, c0:c0 + write_tile]


def slide_background(sources) -> np.ndarray:
    """A slide's own background colour: the per-channel median of the border pixels of its smallest level."""
    smallest = sources[-1]
    pixels = np.asarray(smallest.read(0, smallest.shape[0], 0, smallest.shape[1]), np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


class _Aborted(Exception):
    """Raised inside the writer thread to stop tifffile when the warp is cancelled or fails."""


class _TileWriter(threading.Thread):
    """Writes the pyramid from tiles handed over in a bounded queue, so encoding overlaps the next warp.

    tifffile pulls the tiles of a level from an iterator; that iterator waits on the queue here, in this
    thread, while the caller's generator warps blocks and can yield progress (and be closed) in between.
    """

    def __init__(self, out_path, shapes, channels, options: dict, write_tile: int, metadata: dict):
        super().__init__(name="histoaffine-tile-writer", daemon=True)
        self.out_path, self.shapes, self.channels, self.options = Path(out_path), shapes, channels, options
        self.metadata = metadata
        self.write_tile = write_tile
        self.tiles: queue.Queue = queue.Queue(maxsize=QUEUED_TILES)
        self.error: BaseException | None = None

    def put(self, tile) -> None:
        """Hand one tile (or :class:`_Aborted`) over; fails at once if the writer has died."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self.tiles.put(tile, timeout=0.1)
                return
            except queue.Full:
                continue

    def _level(self, shape) -> Iterator[np.ndarray]:
        count = -(-shape[0] // self.write_tile) * -(-shape[1] // self.write_tile)
        for _ in range(count):
            tile = self.tiles.get()
            if tile is _Aborted:
                raise _Aborted()
            yield tile

    def run(self) -> None:
        try:
            with atomic_write(self.out_path, "wb") as f, tifffile.TiffWriter(f, bigtiff=True, ome=True) as tif:
                for k, shape in enumerate(self.shapes):
                    extra = ({"subifds": len(self.shapes) - 1, "software": "napari-histoaffine",
                              "metadata": {"axes": "YXS" if self.channels else "YX", "Name": self.out_path.name,
                                           **self.metadata}}
                             if k == 0 else {"subfiletype": 1})
                    tif.write(self._level(shape), shape=(*shape, *self.channels), **self.options, **extra)
        except BaseException as exc:  # noqa: BLE001 - handed to the warping thread, which raises it
            self.error = exc


def _in_order(pool: ThreadPoolExecutor, jobs: Iterator[tuple[int, Callable[[], np.ndarray]]]):
    """``(tag, job())`` for every ``(tag, job)``, in order, computed by ``pool`` a few jobs ahead."""
    ahead: deque = deque()
    for tag, job in jobs:
        ahead.append((tag, pool.submit(job)))
        if len(ahead) > 2 * WARP_THREADS:
            tag, future = ahead.popleft()
            yield tag, future.result()
    while ahead:
        tag, future = ahead.popleft()
        yield tag, future.result()


def warp_steps(moving_path, matrix, fixed_shape, out_path, tile: int = 1024, *, write_tile: int = WRITE_TILE,
               compression: str | None = "auto", quality: int = 90, order: int = 1, background="auto",
               cache_mb: int = 128, pixel_size_um=None) -> Generator[Progress, None, list[tuple[int, int]]]:
    """Warp the full-resolution moving image onto a ``fixed_shape`` grid and write a tiled pyramidal OME-TIFF.

    ``matrix`` maps moving to fixed full-resolution pixels (a registration result). Output tiles are
    ``write_tile`` px; they are computed ``tile`` px wide at a time. ``compression`` "auto" is JPEG
    (``quality``) for 8-bit gray/RGB and zlib otherwise; None writes uncompressed. Where the moving slide
    has no pixels the output is ``background``: "auto" is the slide's own background colour (see
    :func:`slide_background`; white on a bright-field slide), or a value, or one value per channel.
    ``pixel_size_um`` ``(x, y)`` (the fixed slide's) is written as the OME ``PhysicalSizeX/Y``.

    Yields progress (fraction of output pixels) after every block and returns the shapes of the written
    levels. The file is written to a temporary name and renamed when complete: closing the generator
    (cancel) or an error leaves no output file and any existing one untouched.
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
    writer = None
    # blocks are warped by a pool of single-threaded workers while the writer thread encodes: OpenCV's (or
    # torch's) own worker threads would spin against the writer (4× slower on two cores)
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    pool = ThreadPoolExecutor(WARP_THREADS, thread_name_prefix="histoaffine-warp")
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
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        writer = _TileWriter(out_path, shapes, channels, options, write_tile, ome_physical_size(pixel_size_um))
        writer.start()
        done, band, blocks = 0, None, []
        jobs = (((k, b), job) for k, shape in enumerate(shapes)
                for b, job in _level_blocks(sources, matrix, full_shape, shape, tile, write_tile, order, fill, dtype))
        for key, block in _in_order(pool, jobs):
            if key != band:  # a band is written once all its blocks are warped
                for part in _band_tiles(blocks, write_tile) if blocks else ():
                    writer.put(part)
                band, blocks = key, []
            blocks.append(block)
            done += block.shape[0] * block.shape[1]
            yield Progress("warp", min(done / total, 1.0), f"level {key[0] + 1} of {len(shapes)}")
        for part in _band_tiles(blocks, write_tile) if blocks else ():
            writer.put(part)
        writer.join()
        if writer.error is not None:
            raise writer.error
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if writer is not None and writer.is_alive():  # cancelled or failed: stop the writer, which removes its file
            writer.tiles.put(_Aborted)
            writer.join()
        for source in sources:
            if isinstance(source, TileSource):
                source.close()
        cv2.setNumThreads(cv2_threads)
    return shapes


def warp_to_ome_tiff(moving_path, matrix, fixed_shape, out_path, tile: int = 1024, *,
                     on_progress: Callable[[Progress], None] | None = None, **options) -> list[tuple[int, int]]:
    """:func:`warp_steps` run to its end (``options`` are its keyword options), progress to ``on_progress``."""
    return run_steps(warp_steps(moving_path, matrix, fixed_shape, out_path, tile, **options), on_progress)
