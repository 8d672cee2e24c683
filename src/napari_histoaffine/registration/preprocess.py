"""Preprocessing as in the paper: one resampling factor per pair, tissue masks, inverted grayscale.

Every image of a pair is resampled by the **same** factor (chosen so the larger of the two fits
``working_size``), smoothed against aliasing, segmented into tissue and background by a smoothed
Laplacian threshold plus morphology, converted to grayscale, inverted (tissue bright, background
0) and normalised so that stains of different strength look alike. Pen strokes and other marks that
absorb far more than stain are filled in first, so they neither join the outline nor outshine the tissue.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import transforms
from ..errors import InputError
from .grayscale import DARK_MEDIAN, image_planes, to_grayscale
from .options import DEFAULT_WORKING_SIZE


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for registration at working resolution.

    ``image`` is inverted grayscale in [0, 1] with background 0; ``mask`` the tissue mask;
    ``to_input`` maps these working pixels to the pixels of the array that was passed in, which
    ``factor`` resampled. ``search_image`` is the same tissue for the pose search, where no
    structure may outweigh the rest (:func:`search_tissue`); ``None`` means ``image``.
    """

    image: np.ndarray
    mask: np.ndarray
    to_input: np.ndarray
    factor: float
    search_image: np.ndarray | None = None


def working_factor(shapes, working_size: int = DEFAULT_WORKING_SIZE) -> float:
    """One resampling factor for all images of a pair: the largest side of any of them fits ``working_size``."""
    longest = max(max(s[0], s[1]) for s in shapes)
    return min(1.0, working_size / float(longest))


def resample(image: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased resize of a gray or channel-last image by ``factor``: 8-bit stays 8-bit, the rest becomes float32.

    Returns the image and the matrix from its pixels to those of the input.
    """
    out_shape = (max(1, round(image.shape[0] * factor)), max(1, round(image.shape[1] * factor)))
    dtype = np.uint8 if image.dtype == np.uint8 else np.float32
    if out_shape == image.shape[:2]:
        small = image.astype(dtype, copy=False)
    else:
        planes = image[..., None] if image.ndim == 2 else image
        t = torch.from_numpy(np.ascontiguousarray(planes, dtype)).permute(2, 0, 1)[None]  # views such as BGR -> RGB too
        small = F.interpolate(t, size=out_shape, mode="bilinear", antialias=True, align_corners=False)[0]
        small = small.permute(1, 2, 0).numpy()
        small = small[..., 0] if image.ndim == 2 else small
    return small, transforms.resample_matrix(out_shape, image.shape)


def _gaussian_kernel(sigma: float, second_derivative: bool = False) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel (or its second derivative), truncated at 4 sigma, for OpenCV's filters."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * x * x / (sigma * sigma))
    kernel /= kernel.sum()
    if second_derivative:
        kernel *= x * x / sigma ** 4 - 1.0 / sigma ** 2
    return kernel.astype(np.float32)


_BLUR_1, _SECOND_DERIVATIVE_1, _BLUR_2 = _gaussian_kernel(1.0), _gaussian_kernel(1.0, True), _gaussian_kernel(2.0)
_SQUARE = np.ones((5, 5), np.uint8)
SIZE_GAP = 1.5  # tissue sizes (in pixels) further apart than this are brought together before the search
MIN_BACKGROUND = 0.03  # of the image: less background than this says nothing about the glass
RANK_LEVELS = np.linspace(0.0, 100.0, 65)  # percentiles between which ranks are interpolated
RANK_TABLE = 1024
# Marks (:func:`absorbing_marks`), chosen on the lung and phantom hard development parts: their artifacts
# 55 -> 85 % and 44 -> 75 %, all kinds 91.1 -> 93.3 % and 90.5 -> 92.7 %; 8 of 241 clean images there had a mark
# before the thinness rule below
MARK_DENSITY = 5.0
MARK_EXTENT = 0.1
# A mark is thin (its middle at most this far from its edge, of the long side: a dense stain's blob is no
# mark, 4 of 14 such false marks gone on clean development images); where it crosses tissue it absorbs a
# little less, and its thin continuation down to ``MARK_TRAIL_DENSITY`` times the level (pixels that an
# opening ``MARK_TRAIL_WIDTH`` of the long side wide removes) belongs to it too. Both together, development
# parts: +9 cases, none lost (phantom dev3 86.7 -> 88.8 %, phantom dev 95.7 -> 96.3 %, lung dev 97.3 -> 97.8 %)
MARK_DEPTH = 0.025
MARK_TRAIL_DENSITY = 4.0
MARK_TRAIL_WIDTH = 0.03
MIN_MARK_DENSITY = 0.05  # the glass's own noise
# In one colour channel, a mark is as much denser than the tissue in that channel, and at least this dense
# (optical density; its trail in proportion): blue or green ink over a dense pink stain is no darker in
# luminance than five times the stain, but it is in the channels the stain lets through. Without the floor
# a channel the stain hardly absorbs made dense stain a mark in 51 of 944 clean development images (14 by
# luminance alone), with it in 29. Lung dev 97.8 -> 98.2 %, phantom dev 96.5 -> 97.2 %, dev3 90.4 -> 92.0 %
# (their artifacts 95 -> 100, 83.3 -> 91.7, 90.4 -> 96.2 %; 9 cases gained, 1 frame lost and flagged);
# right results flagged 26 -> 21, shared 50 and mirrored 70 unchanged
MARK_CHANNEL_FLOOR = 1.0
ENVELOPE_CELLS = 8  # a grid this fine finds lumens or gaps in most cells, yet sees only the light's slow change


def _filtered(image: np.ndarray, along_x: np.ndarray, along_y: np.ndarray) -> np.ndarray:
    return cv2.sepFilter2D(image, -1, along_x, along_y, borderType=cv2.BORDER_REFLECT)


def _morphology(mask: np.ndarray, first, then, outside: int) -> np.ndarray:
    border = {"borderType": cv2.BORDER_CONSTANT, "borderValue": outside}
    return then(first(mask, _SQUARE, **border), _SQUARE, **border)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every region of background that does not touch the border turned to tissue.

    The same as ``scipy.ndimage.binary_fill_holes`` (4-connected background), by one OpenCV flood
    fill from outside the image: a tenth of the time.
    """
    rows, cols = mask.shape
    padded = np.zeros((rows + 2, cols + 2), np.uint8)  # a background frame joins all the border's background
    padded[1:-1, 1:-1] = mask
    reached = np.zeros((rows + 4, cols + 4), np.uint8)
    cv2.floodFill(padded, reached, (0, 0), 1, flags=4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8))
    return reached[2:-2, 2:-2] == 0


def tissue_mask(gray: np.ndarray, mask_size: int = 128) -> np.ndarray:
    """Tissue vs background: threshold of the smoothed Laplacian magnitude, closed, filled and cleaned.

    Computed at a long side of about ``mask_size`` pixels (the outline needs no more) and
    scaled back to the shape of ``gray``. The filters are scipy.ndimage's (Laplacian of Gaussian,
    Gaussian, reflecting borders), run by OpenCV, which is faster at this size.
    """
    coarse, _ = resample(gray, min(1.0, mask_size / max(gray.shape)))
    coarse = np.ascontiguousarray(coarse, np.float32)
    laplacian = (_filtered(coarse, _SECOND_DERIVATIVE_1, _BLUR_1) + _filtered(coarse, _BLUR_1, _SECOND_DERIVATIVE_1))
    response = _filtered(np.abs(laplacian), _BLUR_2, _BLUR_2)
    background_level, tissue_level = np.percentile(response, [5, 99])
    threshold = background_level + 0.05 * (tissue_level - background_level)
    mask = (response > threshold).astype(np.uint8)
    # closing (outside counts as tissue, so sections cut by the border close) and opening with a 5 × 5 square
    mask = _morphology(mask, cv2.dilate, cv2.erode, outside=1)
    mask = _morphology(fill_holes(mask).astype(np.uint8), cv2.erode, cv2.dilate, outside=0)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if count > 2:  # background and more than one piece: small crumbs go
        sizes = stats[1:, cv2.CC_STAT_AREA]
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= 0.05 * sizes.max()))
    if mask.sum() < 0.01 * mask.size:
        mask = np.ones_like(mask)
    return cv2.resize(mask.astype(np.float32), gray.shape[::-1], interpolation=cv2.INTER_LINEAR) > 0.5


def _background_field(gray: np.ndarray, mask: np.ndarray, grid: int = 64) -> np.ndarray | None:
    """The glass's brightness under the whole image: a quadratic surface fitted to the background pixels.

    Fitted on a coarse grid (the field is smooth); ``None`` when too little background shows
    (tissue fills the frame) to say anything about it.
    """
    factor = min(1.0, grid / max(gray.shape))
    coarse_shape = (max(2, round(gray.shape[0] * factor)), max(2, round(gray.shape[1] * factor)))
    coarse = cv2.resize(gray, coarse_shape[::-1], interpolation=cv2.INTER_AREA)
    # background at least two coarse pixels from the tissue: the outline's blur belongs to neither
    outside = cv2.erode((~cv2.resize(mask.astype(np.uint8), coarse_shape[::-1], interpolation=cv2.INTER_NEAREST)
                         .astype(bool)).astype(np.uint8), np.ones((5, 5), np.uint8), borderValue=1).astype(bool)
    # glass in at least three quadrants: a quadratic fitted to glass seen on one side only (gaps at the edge
    # of a section that fills the frame) says nothing of the light across the rest
    half_rows, half_cols = outside.shape[0] // 2, outside.shape[1] // 2
    quadrants = sum(outside[rows, cols].any() for rows in (slice(None, half_rows), slice(half_rows, None))
                    for cols in (slice(None, half_cols), slice(half_cols, None)))
    if outside.sum() < MIN_BACKGROUND * outside.size or quadrants < 3:
        return None
    # and within the light the glass shows: fitted to glass along one side, it would fall towards black
    # across the rest (a vignette, a gradient)
    glass = coarse[outside]
    return np.clip(quadratic_field(coarse, outside, gray.shape), glass.min(), glass.max())


def quadratic_field(samples: np.ndarray, where: np.ndarray, shape) -> np.ndarray:
    """The quadratic surface fitted to ``samples`` (a coarse grid) at ``where``, at ``shape``."""
    rows, cols = np.mgrid[0:samples.shape[0], 0:samples.shape[1]]
    y, x = rows / samples.shape[0] - 0.5, cols / samples.shape[1] - 0.5
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], -1)
    # the normal equations of six centred monomials: a 6 × 6 solve costs a tenth of lstsq's SVD, which
    # OpenBLAS also spreads over threads that then wait on a busy machine; the tiny ridge keeps a grid of
    # two rows or columns (a very elongated image), where x² or y² repeats a lower term, solvable
    fit = terms[where]
    normal = fit.T @ fit
    coefficients = np.linalg.solve(normal + 1e-9 * np.trace(normal) * np.eye(6), fit.T @ samples[where])
    field = (terms @ coefficients).astype(np.float32)
    return cv2.resize(field, shape[::-1], interpolation=cv2.INTER_LINEAR)


def _light_envelope(gray: np.ndarray, cells: int = ENVELOPE_CELLS) -> np.ndarray:
    """The glass's brightness under tissue that fills the frame: a quadratic surface through the brightest light
    of each cell of a ``cells`` × ``cells`` grid (where thin tissue, lumens and gaps let the glass's light through)."""
    rows, cols = (max(1, n // cells) for n in gray.shape)
    blocks = gray[:rows * cells, :cols * cells].reshape(cells, rows, cells, cols).transpose(0, 2, 1, 3)
    brightest = np.percentile(blocks.reshape(cells, cells, -1), 95, axis=-1).astype(np.float32)
    return quadratic_field(brightest, np.ones_like(brightest, bool), gray.shape)


def tissue_signal(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tissue bright, background near 0, whatever the background's polarity and evenness.

    Bright-field sections absorb light (tissue darker than the glass: inverted), dark-field and
    fluorescence ones emit it (tissue brighter: as it is); an image counts as dark-field only when
    both its tissue's extremes and its background (where it shows) say so. Uneven glass (a gradient, a
    vignette, a tint) is flattened by its fitted field: divided out of transmitted light,
    subtracted from emitted light. Where tissue fills the frame of a bright-field image, the field
    comes from the brightest light among the tissue instead (:func:`_light_envelope`).
    """
    field = _background_field(gray, mask)
    tissue = gray[::3, ::3][mask[::3, ::3]] if mask[::3, ::3].any() else gray.ravel()
    # where tissue is thinnest (lumens, holes) its light is the glass's: near 1 in bright-field, near 0
    # in dark-field, where the densest tissue's light is far below the brightest's distance from full
    # light (half of it: grey or dim glass brings a bright-field image's extremes close together); a dark
    # surround alone may be a warp's padding around a bright-field section
    darkest, median, brightest = np.percentile(tissue, [1, 50, 99])
    dark = darkest < 0.5 * (1.0 - brightest) and (field is None or float(np.median(field)) < median)
    if dark:  # the image shows emitted light
        return gray - (field if field is not None else 0.0)
    if field is None:
        field = _light_envelope(gray)
    return 1.0 - gray / np.maximum(field, 1e-3)


def _tissue_values(inverted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The tissue's intensities in every third row and column: the same levels, at a ninth of the cost."""
    values = inverted[::3, ::3][mask[::3, ::3]]
    return values if values.size else np.array([0.0, 1.0], np.float32)


def normalize_tissue(inverted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Stretch tissue intensities to [0, 1] by robust percentiles; background to 0."""
    lo, hi = np.percentile(_tissue_values(inverted, mask), [1, 99])
    out = np.clip((inverted - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    out[~mask] = 0.0
    return out.astype(np.float32)


def search_tissue(inverted: np.ndarray, mask: np.ndarray, stretched: np.ndarray) -> np.ndarray:
    """Tissue for the pose search: half the percentile stretch (``stretched``, :func:`normalize_tissue` of
    ``inverted``), half each pixel's rank among the tissue's.

    A pen stroke, a fold or a bubble's rim absorbs far more than stain does and, stretched alone,
    outshines all the structure that tells the pose; a pixel's rank gives no structure more of the
    range than its share of the tissue, whatever the stains' strengths (lung hard development cases
    88 -> 91 %, their artifacts 25 -> 50 %; phantom development cases 87 -> 88 %). The refinement
    keeps :func:`normalize_tissue`: with these images its optimum moved off the landmarks' on a pair of
    the shared cases.
    """
    levels = np.percentile(_tissue_values(inverted, mask), RANK_LEVELS)
    # ranks looked up in a table of 1024 levels: a third of the time of interpolating every pixel, within 0.001
    lo, hi = float(levels[0]), float(levels[-1])
    table = np.interp(np.linspace(lo, hi, RANK_TABLE), levels, RANK_LEVELS / 100.0).astype(np.float32)
    step = np.float32((RANK_TABLE - 1) / max(hi - lo, 1e-6))
    ranks = table[np.clip((inverted - np.float32(lo)) * step + np.float32(0.5), 0, RANK_TABLE - 1).astype(np.intp)]
    out = 0.5 * (stretched + ranks)
    out[~mask] = 0.0
    return out


def _density_levels(light: np.ndarray, mask: np.ndarray, darkest: float, every: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per plane of ``light`` (H, W) or (H, W, C), on every ``every``-th pixel of every ``every``-th row: the
    glass's light (99th percentile, at least ``darkest``) and the optical density below which three quarters
    of the tissue lie (from the tissue's 25th percentile of light)."""
    sampled, sampled_mask = light[::every, ::every], mask[::every, ::every]
    tissue = sampled[sampled_mask] if sampled_mask.any() else sampled.reshape(-1, *light.shape[2:])
    # each plane's values contiguous: percentiles partition along the last axis, several times faster
    planes = [np.ascontiguousarray(values.reshape(-1, *light.shape[2:]).T) for values in (sampled, tissue)]
    glass = np.maximum(np.percentile(planes[0], 99, axis=-1), darkest)
    return glass, -np.log(np.clip(np.percentile(planes[1], 25, axis=-1) / glass, 1e-3, 1.0))


def absorbing_marks(gray: np.ndarray, mask: np.ndarray, colour: np.ndarray | None = None) -> np.ndarray | None:
    """Pen strokes, bubble rims and similar marks of a bright-field image: long, thin, far darker than its tissue;
    None if none.

    A mark's optical density (against the glass's light) exceeds ``MARK_DENSITY`` times that below which
    three quarters of the tissue lie — in luminance, or in one channel of ``colour`` (the same pixels in
    8-bit colour, if given) and then at least ``MARK_CHANNEL_FLOOR`` —, it reaches across ``MARK_EXTENT`` of
    the image's long side and is at most ``2 × MARK_DEPTH`` of it thick: stain absorbs less, and its densest
    spots are small or wide. Its fainter thin trail over tissue joins it (see ``MARK_TRAIL_DENSITY``).
    Dark-field images (mostly dark) have none.
    """
    if np.median(gray[::3, ::3]) < DARK_MEDIAN:
        return None
    glass, level = _density_levels(gray, mask, 1e-3)
    # three planes: every sixth pixel gives their levels as well (a quarter of the samples, half the time;
    # development parts: the same totals, two phantom artifacts cases changed, one each way)
    channel_levels = None if colour is None else _density_levels(colour, mask, 0.255, every=6)

    def denser_than(times: float) -> np.ndarray:
        dark = gray < glass * np.exp(-max(times * level, MIN_MARK_DENSITY))
        if channel_levels is not None:
            channel_glass, channel_level = channel_levels
            limits = channel_glass * np.exp(-np.maximum(times * channel_level, MARK_CHANNEL_FLOOR * times / MARK_DENSITY))
            # 8-bit light below a limit is light at most the limit's ceiling less one: compared as 8 bits, no float copy
            for channel, below in enumerate(np.ceil(limits).astype(int) - 1):
                if below >= 0:
                    dark |= colour[..., channel] <= np.uint8(min(below, 255))
        return dark.astype(np.uint8)

    dark, long_side = denser_than(MARK_DENSITY), max(gray.shape)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    marks = 1 + np.flatnonzero(extent >= MARK_EXTENT * long_side)
    if marks.size:  # of those, the thin ones: their middle lies near their edge
        depth = cv2.distanceTransform(dark, cv2.DIST_L2, 3)
        marks = marks[[depth[labels == label].max() <= MARK_DEPTH * long_side for label in marks]]
    if marks.size == 0:
        return None
    core = np.isin(labels, marks)
    faint = denser_than(MARK_TRAIL_DENSITY)
    width = max(3, round(MARK_TRAIL_WIDTH * long_side) | 1)
    wide = cv2.morphologyEx(faint, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    _, pieces = cv2.connectedComponents((faint & (1 - wide)) | core.astype(np.uint8), connectivity=8)
    joined = np.unique(pieces[core])
    marks_and_trails = np.isin(pieces, joined[joined > 0])
    return cv2.dilate(marks_and_trails.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # and their rims


def fill_marks(gray: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """``gray`` with ``marks`` replaced by the smoothed light of what lies around them (glass or tissue)."""
    keep = (~marks).astype(np.float32)
    around = cv2.GaussianBlur(gray * keep, (0, 0), 4) / np.maximum(cv2.GaussianBlur(keep, (0, 0), 4), 1e-3)
    return np.where(marks, around, gray).astype(np.float32)


@torch.inference_mode()
def prepare(image: np.ndarray, factor: float) -> PreparedImage:
    """Grayscale → resample → tissue mask → invert → normalise, at resampling ``factor``."""
    img = image_planes(image)
    if img.size == 0 or min(img.shape[:2]) < 2:
        raise InputError(f"image is empty or too small: shape {img.shape[:2]}")
    colour = None  # the 8-bit colour pixels at working size, in which marks show by their ink too
    if img.dtype == np.uint8:  # torch's 8-bit kernel resamples colour faster than a float grayscale copy is made
        resampled, to_input = resample(img, factor)
        small = to_grayscale(resampled)
        colour = resampled if resampled.ndim == 3 else None
    else:
        small, to_input = resample(to_grayscale(img), factor)
    mask = tissue_mask(small)
    marks = absorbing_marks(small, mask, colour)
    if marks is not None:  # they would join the outline and outshine the tissue's structure
        small = fill_marks(small, marks)
        mask = tissue_mask(small)
    signal = tissue_signal(small, mask)
    stretched = normalize_tissue(signal, mask)
    return PreparedImage(stretched, mask, to_input, factor, search_tissue(signal, mask, stretched))


def prepare_pair(moving: np.ndarray, fixed: np.ndarray, working_size: int = DEFAULT_WORKING_SIZE):
    """Both images of a pair, at one common resampling factor unless their tissue's sizes in pixels differ widely.

    A section scanned at a much coarser pixel size (or cut much smaller) would, at the common
    factor, keep only a few dozen pixels of structure for every level of the search: it is
    resampled again so that its tissue comes to the other's size (a long side of at most
    ``working_size``), and the search starts near scale 1.
    """
    factor = working_factor([np.shape(moving), np.shape(fixed)], working_size)
    prepared = [prepare(moving, factor), prepare(fixed, factor)]
    areas = [max(int(np.count_nonzero(p.mask)), 1) for p in prepared]
    gap = float(np.sqrt(max(areas) / min(areas)))
    if gap > SIZE_GAP:
        small = int(np.argmin(areas))
        image = (moving, fixed)[small]
        larger = min(factor * gap, working_size / max(np.shape(image)[:2]))
        if larger > factor * SIZE_GAP:
            prepared[small] = prepare(image, larger)
    return prepared[0], prepared[1]
