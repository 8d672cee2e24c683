"""What every registration checks first: is there anything to register in each image?

A blank, uniform or tiny image "registers" to something anyway (a flagged pose of noise), so the
engine refuses it before any work with one :class:`~napari_histoaffine.errors.UnusableImageError`.
The rule does not look for tissue the way the preprocessing does (its mask is relative to the
image's own contrast, so it finds "tissue" in noise): it asks whether the image, reduced to
``COARSE`` px and with a smooth quadratic background (uneven glass, a vignette) taken out, still
shows contrast of at least ``MIN_CONTRAST`` of the full intensity range (0.5th to 99.5th percentile,
so structure has to cover at least 0.5 % of the image). Averaging down removes sensor and JPEG
noise, and a speck of dust is too small to count. NaN and inf pixels count as background (as in the
preprocessing); an image without any finite pixel is refused.

Measured (contrast at 64 px): blank images 0.000, noisy blanks (JPEG quality 50) 0.004 at σ = 3 grey levels,
0.005–0.012 at σ = 6 (1000 and 500 px: the smaller one passes, and its result is flagged), a 20-px speck on a 1000-px slide 0.002; real sections 0.038–0.67 — the lowest, the
palest shared stain (Cc10) faded to 30 % of its absorbance; ``ihc.png`` (either polarity) 0.61, the
sample pair 0.61–0.67, the five shared stains 0.13–0.48, full-frame crops of them 0.19–0.67,
phantom sections of every stain style 0.14–0.63, and down to 0.012 for the dimmest phantom fluorescence
section under uneven light (a pale, sparse dark-field stain that still registers): the limit lies between.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError, UnusableImageError
from .grayscale import NO_FINITE_PIXELS, finite_as_background, image_planes, to_grayscale
from .preprocess import quadratic_field

MIN_SIDE = 32         # px: a smaller image holds no structure the search (48 px) could use
COARSE = 64           # px: the long side at which contrast is measured
MIN_CONTRAST = 0.011  # of the intensity range (about 3 grey levels of 255)
_RESIZABLE = (np.uint8, np.uint16, np.float32)


def _finite(image: np.ndarray, role: str) -> np.ndarray:
    """Float images with NaN / inf pixels: those set to the brightest finite value (background, as in preprocessing)."""
    if not np.issubdtype(image.dtype, np.floating):
        return image
    try:
        return finite_as_background(image)
    except InputError:
        raise UnusableImageError(role, NO_FINITE_PIXELS) from None


def _coarse(image: np.ndarray) -> np.ndarray:
    """Gray or colour image averaged down to a long side of ``COARSE`` px (colour first: no full-size float copy)."""
    planes = image_planes(image)
    if planes.dtype not in _RESIZABLE:
        planes = planes.astype(np.float32)
    factor = min(1.0, COARSE / max(planes.shape[:2]))
    if factor == 1.0:
        return planes
    size = (max(1, round(planes.shape[1] * factor)), max(1, round(planes.shape[0] * factor)))
    # block means over a whole number of pixels first: OpenCV's fast path, a quarter of the time of one
    # fractional area resize of a full image, and every pixel still counts once
    block = max(1, int(max(planes.shape[:2]) // COARSE))
    rows, cols = planes.shape[0] // block, planes.shape[1] // block
    planes = cv2.resize(np.ascontiguousarray(planes[:rows * block, :cols * block]), (cols, rows),
                        interpolation=cv2.INTER_AREA)
    return cv2.resize(planes, size, interpolation=cv2.INTER_AREA)


def contrast(image: np.ndarray) -> float:
    """The coarse image's contrast (0.5th to 99.5th percentile) with a fitted quadratic background removed,
    on the 0–1 scale of the preprocessing's grayscale."""
    gray = to_grayscale(_coarse(image))
    low, high = np.percentile(gray - quadratic_field(gray, np.ones(gray.shape, bool), gray.shape), [0.5, 99.5])
    return float(high - low)


def check_image(image: np.ndarray, role: str, name: str | None = None, full_shape=None) -> None:
    """Raise :class:`UnusableImageError` when ``image`` (an array as the engine takes it) has nothing to register;
    ``role`` (moving or fixed) and ``name`` (a file or layer) say which image in the message. ``full_shape`` is
    the image's own size when ``image`` is a reduced copy (a pyramid level, the pair at one pixel size)."""
    try:
        _check(np.asarray(image), role, full_shape)
    except UnusableImageError as exc:
        raise exc.named(name) if name else exc from None


def _check(image: np.ndarray, role: str, full_shape) -> None:
    if image.ndim not in (2, 3) or image.ndim == 3 and image.shape[-1] > 4:
        return  # not an image layout: the preprocessing says why
    rows, cols = (full_shape or image.shape)[:2]
    if min(rows, cols) < MIN_SIDE:
        raise UnusableImageError(role, f"is {'empty: ' if min(rows, cols, image.size) == 0 else ''}{rows} x {cols} px: too small to hold any structure "
                                       f"(at least {MIN_SIDE} px a side)")
    image = _finite(image, role)
    if image.dtype == bool:
        image = image.astype(np.uint8) * np.uint8(255)
    if contrast(image) < MIN_CONTRAST:
        raise UnusableImageError(role, f"shows no tissue: it is blank or uniform, or its tissue is too small to see "
                                       f"(contrast under {MIN_CONTRAST:.0%} of its intensity range at {COARSE} px)")
