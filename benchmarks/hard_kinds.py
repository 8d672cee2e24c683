"""What ``make_hard_cases.py`` paints over a case's images; none of it moves a landmark.

- ``artifacts``: pen-marker strokes, dust specks, a fold band and air-bubble rings;
- ``uneven_background``: grey or yellowish glass under an illumination gradient and/or vignette;
- ``inverted``: a dark background, as plain inversion or a fluorescence-like stain channel;
- ``relight``, ``cut_fragment`` and ``place_beside``: a piece of another section laid on the glass beside this one.

Images are BGR uint8 as OpenCV reads them; masks are boolean tissue masks of the same image.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage
from skimage.color import hed_from_rgb

# transmission (B, G, R) of marker inks: they absorb, so they darken tissue and glass alike
INKS = {"blue": (0.55, 0.3, 0.15), "green": (0.3, 0.5, 0.25), "black": (0.18, 0.18, 0.2)}


def _diagonal(image: np.ndarray) -> float:
    return math.hypot(*image.shape[:2])


def _absorb(image: np.ndarray, alpha: np.ndarray, transmission) -> np.ndarray:
    """Lay a filter of the given transmission over the image with opacity ``alpha`` (0–1 per pixel)."""
    factor = 1.0 - alpha[..., None] * (1.0 - np.asarray(transmission, np.float32))
    return np.clip(image * factor, 0, 255).astype(np.uint8)


def _smooth_field(rng, shape, cells: int) -> np.ndarray:
    """Smooth random field in 0–1 that varies over about ``cells`` lengths across the image."""
    coarse = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.clip(cv2.resize(coarse, shape[1::-1], interpolation=cv2.INTER_CUBIC), 0, 1)


def _random_point(rng, where: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(where)
    i = rng.integers(len(xs))
    return np.array([xs[i], ys[i]], float)


def _curve(rng, start: np.ndarray, heading: float, length: float, turning: float) -> np.ndarray:
    """A smooth random curve: a walk whose heading turns by ``turning`` radians in all, with a wobble."""
    n = max(int(length / 2), 8)
    wobble = ndimage.gaussian_filter1d(rng.normal(0, 1, n), n / 8)
    wobble *= 0.35 / (np.abs(wobble).max() + 1e-9)
    heading = heading + turning * np.linspace(0, 1, n) + wobble
    return start + np.cumsum(2.0 * np.stack([np.cos(heading), np.sin(heading)], 1), 0)


def _stroke_mask(shape, points: np.ndarray, thickness: int) -> np.ndarray:
    mask = np.zeros(shape[:2], np.float32)
    cv2.polylines(mask, [np.round(points * 16).astype(np.int32)], False, 1.0, thickness, cv2.LINE_AA, shift=4)
    return mask


def pen_strokes(rng, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    diagonal = _diagonal(image)
    for _ in range(rng.integers(1, 4)):
        # half start on tissue (they cross it), half on the glass, where slides are usually marked
        on_tissue = rng.random() < 0.5 or mask.all()
        start = _random_point(rng, mask if on_tissue else ~mask)
        # some strokes circle a region, as a pathologist marks a lesion; the others are arcs and lines
        turning = rng.choice([-1, 1]) * (rng.uniform(1.6, 2.1) * np.pi if rng.random() < 0.3
                                         else rng.uniform(0, 0.8 * np.pi))
        # headed roughly inwards, so that a stroke begun on the glass stays in the picture
        inwards = math.atan2(*(np.array(image.shape[:2]) / 2 - start[::-1]))
        points = _curve(rng, start, inwards + rng.uniform(-1, 1), rng.uniform(0.25, 0.8) * diagonal, turning)
        stroke = _stroke_mask(image.shape, points, max(3, round(rng.uniform(0.008, 0.018) * diagonal)))
        alpha = cv2.GaussianBlur(stroke, (0, 0), 1.0) * (0.75 + 0.25 * _smooth_field(rng, image.shape, 8))
        ink = np.asarray(INKS[rng.choice(list(INKS))]) * rng.uniform(0.9, 1.1, 3)
        image = _absorb(image, alpha, np.clip(ink, 0, 1))
    return image


def dust(rng, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    specks = np.zeros((h, w), np.float32)
    for _ in range(int(h * w / rng.uniform(4000, 15000))):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        axes = (max(1, round(rng.uniform(0.6, 2.5))), max(1, round(rng.uniform(0.6, 4.0))))
        cv2.ellipse(specks, centre, axes, rng.uniform(0, 180), 0, 360, rng.uniform(0.4, 0.9), -1, cv2.LINE_AA)
    for _ in range(rng.integers(0, 4)):  # fibres
        fibre = _curve(rng, rng.uniform([0, 0], [w, h]), rng.uniform(0, 2 * np.pi), rng.uniform(15, 60),
                       rng.uniform(-3, 3))
        specks = np.maximum(specks, 0.7 * _stroke_mask(image.shape, fibre, 1))
    return _absorb(image, cv2.GaussianBlur(specks, (0, 0), 0.7), (0.25, 0.25, 0.3))


def fold(rng, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A flap of tissue folded over along a line from the section's edge inwards: a doubled, darker band.

    Folded tissue lies twice on the glass, so the band transmits the product of the two layers: the
    tissue below and the neighbouring strip mirrored over the fold line.
    """
    h, w = mask.shape
    diagonal = _diagonal(image)
    origin = _random_point(rng, mask)
    phi = rng.uniform(0, np.pi)
    normal, along = np.array([math.cos(phi), math.sin(phi)]), np.array([-math.sin(phi), math.cos(phi)])
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    d = (xx - origin[0]) * normal[0] + (yy - origin[1]) * normal[1]
    t = (xx - origin[0]) * along[0] + (yy - origin[1]) * along[1]
    end, taper = rng.uniform(0, 0.3) * diagonal, rng.uniform(0.1, 0.3) * diagonal
    width = rng.uniform(0.03, 0.08) * diagonal * np.clip((end - t) / taper, 0, 1)
    map_x, map_y = (xx - 2 * d * normal[0]).astype(np.float32), (yy - 2 * d * normal[1]).astype(np.float32)
    flap = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    flap_tissue = cv2.remap(mask.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderValue=0)
    band = ((d >= 0) & (d <= width)).astype(np.float32)
    band = cv2.GaussianBlur(band, (0, 0), 0.8) * flap_tissue
    crease = np.exp(-0.5 * (d / 1.5) ** 2) * band  # the fold line itself is a dark ridge
    doubled = image * (flap / 255.0) * (1 - 0.25 * crease[..., None])
    return np.clip(image + band[..., None] * (doubled - image), 0, 255).astype(np.uint8)


def bubbles(rng, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    rings, insides = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    for _ in range(rng.integers(1, 5)):
        centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
        radius = rng.uniform(0.015, 0.07) * _diagonal(image)
        axes = (round(radius), round(radius * rng.uniform(0.75, 1.0)))
        angle = rng.uniform(0, 180)
        cv2.ellipse(insides, centre, axes, angle, 0, 360, 1.0, -1, cv2.LINE_AA)
        cv2.ellipse(rings, centre, axes, angle, 0, 360, rng.uniform(0.5, 0.8), int(rng.integers(1, 4)), cv2.LINE_AA)
    # air refracts less than the mounting medium: the inside looks washed out, the rim dark
    lighter = 255 - (255 - image.astype(np.float32)) * (1 - 0.2 * insides[..., None])
    return _absorb(lighter, cv2.GaussianBlur(rings, (0, 0), 0.6), (0.2, 0.2, 0.22))


def artifacts(rng, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    image = dust(rng, pen_strokes(rng, image, mask))
    if rng.random() < 0.6:
        image = fold(rng, image, mask)
    if rng.random() < 0.6:
        image = bubbles(rng, image)
    return image


def uneven_background(rng, image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    field = np.ones((h, w), np.float32)
    gradient = rng.random() < 0.7
    vignette = not gradient or rng.random() < 0.5
    if gradient:
        phi = rng.uniform(0, 2 * np.pi)
        ramp = xx * math.cos(phi) + yy * math.sin(phi)
        field *= 1 - rng.uniform(0.15, 0.4) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-9)
    if vignette:
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        field *= 1 - rng.uniform(0.15, 0.35) * r2
    tint = (rng.uniform(0.78, 0.92),) * 3 if rng.random() < 0.5 else \
        (rng.uniform(0.7, 0.85), rng.uniform(0.9, 0.97), 1.0)  # grey or yellowish glass (BGR)
    shaded = image * np.maximum(field, 0.6)[..., None] * np.asarray(tint, np.float32)
    return np.clip(shaded, 0, 255).astype(np.uint8)


def inverted(rng, image: np.ndarray, glass) -> np.ndarray:
    """The image in the other polarity: inverted, or (bright-field only) a stain channel rendered as fluorescence.

    A dark-field image (a phantom's fluorescence stain) is only inverted: the optical density of light it
    emits means nothing (its noisy dark field would become bright signal around dark tissue). It draws the
    same random numbers all the same, so that every later case stays as it was.
    """
    if rng.random() < 0.4:
        return 255 - image
    # fluorescence-like: a stain's optical density relative to the glass, bright on black
    density = np.maximum(-np.log((image.astype(np.float32) + 1) / (np.asarray(glass, np.float32) + 1)), 0)
    signal = density[..., ::-1] @ hed_from_rgb[:, 0] if rng.random() < 0.5 else density.sum(-1)
    signal = np.clip(signal / (np.percentile(signal, 99.5) + 1e-6), 0, 1) ** 0.8 * rng.uniform(180, 255)
    signal = cv2.GaussianBlur(signal.astype(np.float32), (0, 0), 0.8) + rng.normal(8, rng.uniform(2, 6), signal.shape)
    colour = {"green": (0, 1, 0), "red": (0, 0, 1), "grey": (1, 1, 1)}[rng.choice(["green", "red", "grey"])]
    if np.mean(glass) < 128:
        return 255 - image
    return np.clip(signal[..., None] * np.asarray(colour, np.float32), 0, 255).astype(np.uint8)


def relight(image: np.ndarray, glass, new_glass) -> np.ndarray:
    """The image as if scanned under the light that shows its glass as ``new_glass``."""
    gain = np.asarray(new_glass, np.float32) / np.maximum(np.asarray(glass, np.float32), 1)
    return np.clip(image * gain, 0, 255).astype(np.uint8)


def section_area(mask: np.ndarray) -> float:
    """Area of the section: its convex hull, since a lung's airspaces fall out of any tissue mask."""
    return float(cv2.contourArea(cv2.convexHull(cv2.findNonZero(mask.astype(np.uint8)))))


def cut_fragment(rng, donor: np.ndarray, donor_mask: np.ndarray, area: float) -> tuple[np.ndarray, np.ndarray]:
    """A random irregular piece of tissue of ``area`` pixels from ``donor``, turned and maybe mirrored.

    Returns the piece's pixels and its opacity (0–1), both cropped to the piece.
    """
    h, w = donor_mask.shape
    radius = min(math.sqrt(area / np.pi), 0.45 * min(h, w))
    margin = int(radius)
    fits = donor_mask.copy()
    fits[:margin], fits[h - margin:], fits[:, :margin], fits[:, w - margin:] = False, False, False, False
    centre = _random_point(rng, fits if fits.any() else donor_mask)
    angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    wobble = sum(rng.uniform(0, 0.12) * np.cos(k * angles + rng.uniform(0, 2 * np.pi)) for k in range(1, 6))
    outline = centre + (radius * (1 + wobble))[:, None] * np.stack([np.cos(angles), np.sin(angles)], 1)
    piece = np.zeros((h, w), np.uint8)
    cv2.fillPoly(piece, [np.round(outline).astype(np.int32)], 1)
    piece &= donor_mask.astype(np.uint8)
    # zoom to the asked area: a piece of another specimen need not share this one's pixel size
    zoom = math.sqrt(area / max(piece.sum(), 1))
    theta = rng.uniform(0, 2 * np.pi)
    linear = zoom * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    if rng.random() < 0.5:
        linear = linear @ np.diag([-1.0, 1.0])
    ys, xs = np.nonzero(piece)
    corners = np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.min(), ys.max()], [xs.max(), ys.max()]], float)
    moved = corners @ linear.T
    matrix = np.hstack([linear, (1 - moved.min(0))[:, None]])
    size = tuple(int(v) for v in np.ceil(moved.max(0) - moved.min(0)) + 3)
    pixels = cv2.warpAffine(donor, matrix, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(piece.astype(np.float32), matrix, size, flags=cv2.INTER_LINEAR)
    return pixels, cv2.GaussianBlur(alpha, (0, 0), 0.7)


def place_beside(rng, image: np.ndarray, mask: np.ndarray, pixels: np.ndarray, alpha: np.ndarray,
                 fill) -> tuple[np.ndarray, np.ndarray]:
    """Lay a piece on the glass beside the section, past its tissue on a random side, growing the canvas.

    Returns the new image and the shift (x, y) of the old image's pixels in it.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    lo, hi = np.array([xs.min(), ys.min()]), np.array([xs.max() + 1, ys.max() + 1])
    size = np.array(pixels.shape[1::-1])
    gap = rng.uniform(0.03, 0.1) * np.hypot(*size)
    axis, before = rng.integers(2), rng.random() < 0.5   # left/right or above/below
    corner = np.zeros(2)
    corner[axis] = lo[axis] - gap - size[axis] if before else hi[axis] + gap
    other = 1 - axis
    corner[other] = rng.uniform(*sorted([lo[other], hi[other] - size[other]]))
    corner = np.round(corner).astype(int)
    margin = int(rng.uniform(0.02, 0.06) * np.hypot(*size))
    start = np.minimum(0, corner - margin)
    stop = np.maximum([w, h], corner + size + margin)
    canvas = np.empty((stop[1] - start[1], stop[0] - start[0], 3), np.uint8)
    canvas[:] = fill
    shift = -start
    canvas[shift[1]:shift[1] + h, shift[0]:shift[0] + w] = image
    x0, y0 = corner + shift
    region = canvas[y0:y0 + size[1], x0:x0 + size[0]].astype(np.float32)
    blended = region + alpha[..., None] * (pixels.astype(np.float32) - region)
    canvas[y0:y0 + size[1], x0:x0 + size[0]] = np.clip(blended, 0, 255).astype(np.uint8)
    return canvas, shift.astype(float)
