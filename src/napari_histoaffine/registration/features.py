"""Structure features shared by the pose search and the refinement: downsampled pairs and their feature pyramid.

Scores use tissue structure (the lightly smoothed inverted image and its gradient magnitude; for the pose search
also the gradient's direction), not one blurred intensity image, because stains are not linearly related.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .. import transforms
from .preprocess import PreparedImage
from .similarity import blur, central_differences, ncc

MIN_OVERLAP = 0.5  # of the smaller image: less is no placement of one section on the other
MIN_COVER = 0.02   # of the fixed image
# most values one batch of warped images may hold: a much larger batch is fresh memory for every call
# (page faults) and no longer fits the CPU's cache; smaller ones pay torch's cost per call more often
# (five poses at 192 px: 1.7 ms as one batch of 2^19 values, 1.8 ms in two, 2.4 ms in three)
BATCH_VALUES = 1 << 19
ORIENTATION = slice(2, 4)  # the channels of :func:`structure_features` that hold the edges' direction


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))[None, None]


def downsample(image: np.ndarray, long_side: int) -> tuple[torch.Tensor, np.ndarray]:
    """Anti-aliased ``(1, 1, h, w)`` tensor with the given long side, and the matrix input → small pixels."""
    factor = min(1.0, long_side / max(image.shape))
    shape = (max(8, round(image.shape[0] * factor)), max(8, round(image.shape[1] * factor)))
    small = _to_tensor(image)
    if shape != small.shape[-2:]:
        small = F.interpolate(small, size=shape, mode="bilinear", antialias=True, align_corners=False)
    return small, transforms.resample_matrix(image.shape, shape)


def downsample_pair(moving: np.ndarray, fixed: np.ndarray, long_side: int):
    """Both images at one common factor that gives the larger of them ``long_side``.

    Returns ``(moving_small, moving_to_small, fixed_small, fixed_to_small)`` as from :func:`downsample`.
    """
    factor = long_side / max(max(moving.shape), max(fixed.shape))
    moving_small, moving_to_small = downsample(moving, round(max(moving.shape) * factor))
    fixed_small, fixed_to_small = downsample(fixed, round(max(fixed.shape) * factor))
    return moving_small, moving_to_small, fixed_small, fixed_to_small


def small_theta(matrix: np.ndarray, moving_to_small: np.ndarray, moving_shape, fixed_to_small: np.ndarray,
                fixed_shape) -> np.ndarray:
    """Theta, between the downsampled grids of :func:`downsample_pair`, of a working moving → fixed matrix.

    A stack of matrices gives a stack of thetas.
    """
    small = transforms.compose(transforms.invert(moving_to_small), matrix, fixed_to_small)
    return transforms.to_theta(small, moving_shape, fixed_shape)


def structure_features(image: np.ndarray, orientation: bool = False) -> torch.Tensor:
    """Structure channels ``(1, C, H, W)`` of an ``(H, W)`` image: lightly smoothed intensity and its edges, and with
    ``orientation`` the edges' direction (:data:`ORIENTATION`).

    Computed in NumPy and OpenCV: at these sizes torch's cost per operation is most of the work.
    """
    gx, gy = central_differences(blur(image, 1.0))
    magnitude = np.sqrt(gx * gx + gy * gy + np.float32(1e-12))
    channels = np.stack([blur(image, 0.5), blur(magnitude, 1.0)])
    channels /= np.maximum(channels.reshape(2, -1).std(1, ddof=1), 1e-6)[:, None, None]
    if orientation:
        # the gradient's direction as a double angle (cos 2θ, sin 2θ), weighted by its magnitude: the same for an
        # edge whichever side is darker, so it holds across stains; smoothed, it is the local structure tensor
        turned = np.stack([blur((gx * gx - gy * gy) / magnitude, 1.0), blur(2 * gx * gy / magnitude, 1.0)])
        turned /= max(float(turned.std(ddof=1)), 1e-6)  # one scale for both: a turn mixes them
        channels = np.concatenate([channels, turned])
    return torch.from_numpy(channels)[None]


def turn_orientations(warped: torch.Tensor, matrices: np.ndarray) -> torch.Tensor:
    """Warped moving :func:`structure_features` with their :data:`ORIENTATION` channels turned (and mirrored) as each
    of the ``(N, 3, 3)`` moving → fixed ``matrices`` turns the image, in place: warping moves the pixels, not the
    directions they hold."""
    (a, b), (c, d) = np.moveaxis(np.asarray(matrices, float)[:, :2, :2], 0, -1)
    mirror = np.where(a * d - b * c < 0, -1.0, 1.0)
    angle = np.arctan2(c - mirror * b, a + mirror * d)  # the nearest turn (after any mirror about x), in closed form
    # a mirror negates the double angle, a turn by φ adds 2φ to it
    weights = [torch.from_numpy(w).to(warped.dtype).view(-1, 1, 1) for w in
               (np.cos(2 * angle), -mirror * np.sin(2 * angle), np.sin(2 * angle), mirror * np.cos(2 * angle))]
    cos2, sin2 = warped[:, ORIENTATION.start], warped[:, ORIENTATION.start + 1]
    turned_cos2 = weights[0] * cos2 + weights[1] * sin2
    sin2.mul_(weights[3]).add_(weights[2] * cos2)
    cos2.copy_(turned_cos2)
    return warped


def with_domain(images: torch.Tensor) -> torch.Tensor:
    """``(1, C, H, W)`` images with a last channel of ones: warped, it says where the images cover the output grid."""
    return torch.cat([images, torch.ones_like(images[:, :1])], dim=1)


def inside(warped):
    """``(N, 1, ...)`` 0/1 weights: where the last channel of warped :func:`with_domain` images says the images are.

    Similarities count only those pixels: beyond its edge the moving image has no data, not
    background, and counting it as background makes a pose that covers the fixed frame better win
    over the right one when tissue fills both frames. ``warped`` is a tensor or a NumPy array, and
    so are the weights.
    """
    covered = warped[:, -1:] > 0.999
    return covered.to(warped.dtype) if isinstance(covered, torch.Tensor) else covered.astype(warped.dtype)


def overlap_is_enough(overlap, theta: torch.Tensor, fixed_pixels: int):
    """Whether two images overlap enough (``overlap`` pixels of the fixed grid) for a similarity to mean anything.

    Enough is :data:`MIN_OVERLAP` of the smaller image (the moving image covers the fixed grid's
    area over ``|det θ|``) and :data:`MIN_COVER` of the fixed grid: a few pixels of overlap
    correlate perfectly by chance. ``overlap`` is an ``(N, ...)`` tensor or array for the ``(N, 2, 3)``
    thetas; the answer is of its kind.
    """
    t = theta if isinstance(overlap, torch.Tensor) else theta.numpy()
    determinant = abs(t[:, 0, 0] * t[:, 1, 1] - t[:, 0, 1] * t[:, 1, 0])  # of 2 × 2: torch's LU costs 0.1 ms a call
    moving_pixels = fixed_pixels / determinant.clip(min=1e-12)
    smaller = moving_pixels.clip(max=fixed_pixels).reshape((-1,) + (1,) * (overlap.ndim - 1))
    return (overlap >= MIN_OVERLAP * smaller) & (overlap >= MIN_COVER * fixed_pixels)


class FeatureLevel:
    """Structure features of a prepared pair at one scale, and its working matrix ↔ theta conversions."""

    def __init__(self, moving: np.ndarray, fixed: np.ndarray, long_side: int, orientation: bool = False):
        m_small, self.m_to_small, f_small, self.f_to_small = downsample_pair(moving, fixed, long_side)
        self.orientation = orientation  # warped moving features must then be turned (:func:`turn_orientations`)
        self.moving = structure_features(m_small[0, 0].numpy(), orientation)
        self.fixed = structure_features(f_small[0, 0].numpy(), orientation)
        self.moving_with_domain = with_domain(self.moving)
        self.m_shape, self.f_shape = m_small.shape[-2:], f_small.shape[-2:]

    def thetas(self, matrices) -> torch.Tensor:
        """``(N, 2, 3)`` float32 thetas, on this level's grids, of working moving → fixed matrices."""
        thetas = small_theta(np.asarray(matrices, float), self.m_to_small, self.m_shape, self.f_to_small, self.f_shape)
        return torch.from_numpy(thetas).float()

    def matrices(self, thetas: torch.Tensor) -> np.ndarray:
        """``(N, 3, 3)`` working moving → fixed matrices of ``(N, 2, 3)`` thetas on this level's grids."""
        small = transforms.from_theta(thetas.numpy(), self.m_shape, self.f_shape)
        return transforms.compose(self.m_to_small, small, transforms.invert(self.f_to_small))

    def warped(self, theta: torch.Tensor, with_domain_channel: bool, stride: int = 1) -> torch.Tensor:
        """The moving features (and, if asked, the domain channel) warped onto the fixed grid by each theta, their
        directions turned with the pose where the level holds them."""
        warped = transforms.warp_tensor(self.moving_with_domain if with_domain_channel else self.moving, theta,
                                        self.f_shape, stride)
        return turn_orientations(warped, self.matrices(theta)) if self.orientation else warped

    def similarity(self, theta: torch.Tensor, masked: bool = True, stride: int = 1) -> np.ndarray:
        """Structure NCC of the pair under each of a batch of thetas, on every ``stride``-th row and column.

        Masked, only where the moving image covers the fixed grid, and poses that do not overlap
        enough (:func:`overlap_is_enough`) score -1; plain, over the whole fixed grid with zeros
        beyond the moving image's edge, so it also says how much of the fixed image the moving
        one explains. Computed in NumPy after the warp: the scores are only compared.
        """
        fixed = self.fixed[..., ::stride, ::stride].numpy()
        pixels = fixed.shape[-2] * fixed.shape[-1]
        batch = max(1, BATCH_VALUES // (self.moving_with_domain.shape[1] * pixels))
        if len(theta) > batch:
            return np.concatenate([self.similarity(part, masked, stride) for part in theta.split(batch)])
        warped = self.warped(theta, masked, stride).numpy()
        if not masked:
            return ncc(warped, fixed)
        weight = inside(warped)
        enough = overlap_is_enough(weight.sum((1, 2, 3)), theta, pixels)
        return np.where(enough, ncc(warped[:, :-1], fixed, weight), -1.0)


class StructurePyramid:
    """The feature levels of one prepared pair, each built once when first asked for, shared by every stage.

    ``for_search`` builds them from the pair's search images (:func:`~.preprocess.search_tissue`), with the edges'
    direction as well: a pose search scores whole turns, and where the outline says nothing (tissue filling both
    frames, a fragment beside a section) the direction of interior structure tells turns apart that edge strength
    alone does not, across stains as unlike as fluorescence and DAB. The refinement's steps take every channel for
    an image of its own and cannot turn directions, so its pyramid has none.
    """

    def __init__(self, moving: PreparedImage, fixed: PreparedImage, *, for_search: bool = False):
        self.moving, self.fixed = moving, fixed
        self.images = [p.search_image if for_search and p.search_image is not None else p.image for p in (moving, fixed)]
        self._levels: dict[int, FeatureLevel] = {}
        self._search: StructurePyramid | None = None
        self.with_orientation = for_search

    def for_search(self) -> StructurePyramid:
        """The pair's pyramid of search images, built once."""
        if self._search is None:
            self._search = StructurePyramid(self.moving, self.fixed, for_search=True)
        return self._search

    @torch.inference_mode()
    def level(self, long_side: int) -> FeatureLevel:
        if long_side not in self._levels:
            self._levels[long_side] = FeatureLevel(*self.images, long_side, orientation=self.with_orientation)
        return self._levels[long_side]

    @torch.inference_mode()
    def similarity(self, matrices: list[np.ndarray], long_side: int, masked: bool = True,
                   stride: int = 1) -> list[float]:
        """Structure NCC of the pair under each working moving → fixed matrix, at the given scale and stride (see
        :meth:`FeatureLevel.similarity`)."""
        level = self.level(long_side)
        return [float(s) for s in np.nan_to_num(level.similarity(level.thetas(matrices), masked, stride), nan=-1.0)]
