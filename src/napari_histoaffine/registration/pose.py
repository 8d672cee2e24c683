"""Initial pose search: centre of mass, tissue-area scale, exhaustive rotation and mirror search.

All candidate poses are warped in batched ``grid_sample`` calls and each gets its best
translation from an FFT cross-correlation, so its score is that of the best-placed pose rather
than of the centre-of-mass guess. Scores use tissue structure (the lightly smoothed inverted
image, its gradient magnitude and the gradient's direction, turned with each pose), not one blurred
intensity image, because stains are not linearly related and the blurred outline of a section
hardly differs from its mirror image or its 180° turn. The top distinct poses are returned so
later stages can decide between them.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.fft import next_fast_len

from .. import transforms
from .features import FeatureLevel, StructurePyramid, inside, overlap_is_enough
from .results import Pose

SEARCH_SIZE = 48
SIZES_DIFFER = 1.15  # scales closer than this count as one (an area ratio further from 1 is in doubt)
# The second look scores every pose at this size: where tissue fills both frames, or fragments and stains mislead
# the outline, the interior must decide, and at 48 px it is a blur (development parts at 96 px rather than 48:
# +8 cases, 2 lost, of which frames +6 of 114, mostly fluorescence against bright-field; shared 50 and mirrored
# 70 unchanged). Searching at 96 px only where tissue fills both frames found as many (+2 and -2 cases) and
# saved 6 of the shared pairs' mean 68 ms, none of their median 44 ms (alternating in one process)
SECOND_LOOK_SIZE = 96
# the second look's scales besides the area ratio's: the same input pixel size, and a fifth either way (a
# crop that cuts the tissue makes the areas say nothing)
SECOND_LOOK_SCALES = (0.8, 1.0, 1.25)
CHECK_SCALES = (0.84, 0.92, 1.0, 1 / 0.92, 1 / 0.84)  # around each peak's scale: neither scale guess is exact
THOROUGH_PEAKS = 8
# tissue over more than this share of both images fills their frames: the outline is the crop's rectangle, and
# a race not clearly won takes the second look, as with a doubtful scale (development frames: +1 of 114, none
# lost; 10 of 892 other cases pass the mark, and 11 of the shared 50, at no cost to their median time; always
# taking the second look there gained one more frame and cost 5 % of the shared pairs' median time)
FILLS_FRAME = 0.9


def fft_length(n: int) -> int:
    """The smallest length ≥ ``n`` of the form 2^a or 3 · 2^a.

    The scores' real FFTs are padded to these lengths along their last axis: there the CPU's FFT is
    up to twice as fast as at other 5-smooth lengths of about the same size (45, 50 or 54 against
    48 or 64); along the other axis the length matters far less.
    """
    power_of_two = 1 << (n - 1).bit_length()                        # the smallest ≥ n
    three_quarters = 3 * power_of_two // 4
    return three_quarters if power_of_two >= 4 and three_quarters >= n else power_of_two


def centre_of_mass(mask: np.ndarray) -> np.ndarray:
    """``(x, y)`` centre of a mask."""
    total = np.count_nonzero(mask)
    if total == 0:
        return np.array([mask.shape[1] / 2.0, mask.shape[0] / 2.0])
    return np.array([mask.sum(0) @ np.arange(mask.shape[1]), mask.sum(1) @ np.arange(mask.shape[0])]) / total


def pose_matrices(angles_deg: np.ndarray, flipped: np.ndarray, scale: float, moving_centre, fixed_centre) -> np.ndarray:
    """``(N, 3, 3)`` moving → fixed matrices: mirror and turn about the moving centre, scale, move onto the fixed centre.

    The same matrices as ``compose(translation(-moving_centre), mirror_x(0) if flipped, rotation(angle),
    scaling(scale), translation(fixed_centre))``, built for all angles at once.
    """
    radians = np.deg2rad(np.asarray(angles_deg, float))
    mirror = np.where(np.asarray(flipped, bool), -1.0, 1.0)
    c, s = np.asarray(scale) * np.cos(radians), np.asarray(scale) * np.sin(radians)
    matrices = np.zeros((radians.size, 3, 3))
    matrices[:, 0, 0], matrices[:, 0, 1] = c * mirror, s
    matrices[:, 1, 0], matrices[:, 1, 1] = -s * mirror, c
    matrices[:, 2, 2] = 1.0
    return transforms.compose(transforms.translation(-moving_centre[0], -moving_centre[1]), matrices,
                              transforms.translation(fixed_centre[0], fixed_centre[1]))


class _Scorer:
    """Scores many moving → fixed poses in one batched warp; the best translation of each comes from FFTs.

    Plain scoring is the normalised cross-correlation of the whole fixed grid with the warped
    moving image, zeros beyond its edge: right when the moving section lies on background, as
    beyond the edge there would be more background. Masked scoring (Padfield 2012) counts, at
    every shift, only the pixels where both images have data, so tissue that fills a frame is
    not compared with zeros that are no background; it costs about twice as much. Only shifts up to
    ``max_shift`` of the fixed image's sides are read from the FFTs' results, and those whose
    overlap is too small (:func:`~.features.overlap_is_enough`) are not considered. Returns, per
    pose, the best score and its shift (working pixels).
    """

    def __init__(self, level: FeatureLevel, masked: bool, max_shift: float = 0.25):
        self.level, self.masked = level, masked
        h, w = level.f_shape
        rows, cols = (n + int(np.ceil(max_shift * n)) + 1 for n in (h, w))
        self.pad_shape = (next_fast_len(rows), fft_length(cols))
        fixed = level.fixed if masked else level.fixed - level.fixed.mean((2, 3), keepdim=True)
        self.channels, self.fixed_pixels = fixed.shape[1], h * w
        self.fixed_spectrum = self._spectrum(fixed)                                  # (1, C, ...)
        if masked:
            self.fixed_sum_spectrum = self.fixed_spectrum.sum(1)                     # of Σ_c F_c
            self.fixed_squares_spectrum = self._spectrum((fixed * fixed).sum(1))    # of Σ_c F_c²
            self.fixed_domain_spectrum = self._spectrum(torch.ones_like(fixed[:, 0]))
        else:
            self.fixed_norm = fixed.flatten(1).norm()
        dy, dx = (torch.arange(n) for n in self.pad_shape)
        dy = torch.where(dy > self.pad_shape[0] // 2, dy - self.pad_shape[0], dy)     # the shift of each row
        dx = torch.where(dx > self.pad_shape[1] // 2, dx - self.pad_shape[1], dx)     # and of each column
        # the shifts considered: a band of rows and of columns of the correlation (a sixth of it). Only
        # those rows are transformed back, by one matrix product (the inverse DFT along the rows,
        # restricted to them) instead of a full inverse FFT: a third of the time
        rows = torch.nonzero(dy.abs() <= max_shift * h)[:, 0]
        self.columns = torch.nonzero(dx.abs() <= max_shift * w)[:, 0]
        phases = 2 * np.pi * np.outer(rows.numpy(), np.arange(self.pad_shape[0])) / self.pad_shape[0]
        self.rows_inverse = torch.from_numpy(np.exp(1j * phases) / self.pad_shape[0]).to(torch.complex64)
        self.allowed_shifts = torch.stack([dx[self.columns].repeat(len(rows)),
                                           dy[rows].repeat_interleave(len(self.columns))], 1)
        self.factor = level.f_to_small[0, 0]

    def _spectrum(self, images: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(images, s=self.pad_shape)

    def _correlation(self, spectrum: torch.Tensor) -> torch.Tensor:
        """``(B, shifts)`` correlations at the allowed shifts (row by row) of a ``(B, ...)`` cross-power spectrum."""
        rows = torch.fft.irfft(self.rows_inverse @ spectrum, n=self.pad_shape[1], dim=-1)
        return rows[..., self.columns].flatten(1)

    def _cross_spectrum(self, warped_spectrum: torch.Tensor) -> torch.Tensor:
        """Σ over channels of the fixed spectrum times the conjugate warped one: one multiply-add per channel
        (a product of all channels, then a sum, makes and reads one more large complex array)."""
        fixed, warped = self.fixed_spectrum[:, 0], warped_spectrum[:, 0].conj()
        out = fixed * warped
        for c in range(1, warped_spectrum.shape[1]):
            out.addcmul_(self.fixed_spectrum[:, c], warped_spectrum[:, c].conj())
        return out

    def _plain(self, sampled: torch.Tensor) -> torch.Tensor:
        warped = sampled - sampled.mean((2, 3), keepdim=True)
        norms = warped.flatten(1).norm(dim=1) * self.fixed_norm
        cross = self._correlation(self._cross_spectrum(self._spectrum(warped)))
        return cross / norms.clamp_min(1e-12).view(-1, 1)

    def _masked(self, sampled: torch.Tensor, thetas: torch.Tensor) -> torch.Tensor:
        domain = inside(sampled)[:, 0]
        warped = sampled[:, :-1] * domain[:, None]
        warped_spectrum = self._spectrum(warped)                                     # (B, C, ...)
        domain_spectrum = self._spectrum(domain).conj()
        overlap = self._correlation(self.fixed_domain_spectrum * domain_spectrum)                # pixels
        fixed_sum = self._correlation(self.fixed_sum_spectrum * domain_spectrum)
        fixed_squares = self._correlation(self.fixed_squares_spectrum * domain_spectrum)
        warped_sum = self._correlation(self.fixed_domain_spectrum * warped_spectrum.sum(1).conj())
        warped_squares = self._correlation(self.fixed_domain_spectrum * self._spectrum((warped * warped).sum(1)).conj())
        cross = self._correlation(self._cross_spectrum(warped_spectrum))
        counted = overlap.clamp_min(1.0) * self.channels
        covariance = cross - fixed_sum * warped_sum / counted
        variance = ((fixed_squares - fixed_sum ** 2 / counted).clamp_min(0)
                    * (warped_squares - warped_sum ** 2 / counted).clamp_min(0))
        enough = overlap_is_enough(overlap, thetas, self.fixed_pixels)
        return torch.where(enough, covariance / torch.sqrt(variance + 1e-12), -torch.inf)

    def __call__(self, matrices: list[np.ndarray], chunk: int = 64):
        thetas = self.level.thetas(matrices)
        scores, shifts = [], []
        for start in range(0, len(thetas), chunk):
            chunk_thetas = thetas[start:start + chunk]
            sampled = self.level.warped(chunk_thetas, self.masked)
            at_shifts = self._masked(sampled, chunk_thetas) if self.masked else self._plain(sampled)
            best, index = at_shifts.max(1)
            scores.append(best)
            shifts.append(self.allowed_shifts[index])
        return torch.cat(scores).numpy(), torch.cat(shifts).numpy() / self.factor


def same_pose(a: Pose, b: Pose, min_separation_deg: float = 18.0) -> bool:
    """Same mirror state, angles closer than ``min_separation_deg`` and scales within 15 %."""
    return (a.flipped == b.flipped and transforms.angle_difference(a.angle_deg, b.angle_deg) < min_separation_deg
            and abs(np.log(a.scale / b.scale)) < np.log(1.15))


def _distinct(poses: list[Pose], k: int, min_separation_deg: float) -> list[Pose]:
    kept: list[Pose] = []
    for pose in sorted(poses, key=lambda p: -p.score):
        if not any(same_pose(p, pose, min_separation_deg) for p in kept):
            kept.append(pose)
        if len(kept) == k:
            break
    return kept


class PoseSearch:
    """Rigid-plus-scale starting poses of one pair: a fast first search, and a thorough second look.

    Every candidate pose is warped in batched ``grid_sample`` calls and gets its best translation
    from an FFT (starting at the tissue centres of mass), so its score is that of the best-placed
    pose. The first search tries one scale, the square root of the tissue-area ratio, at every
    ``coarse_step`` angle with and without a mirror flip at ``SEARCH_SIZE`` px, and refines the
    ``top_k`` distinct peaks at ``fine_step``, with plain scores (beyond the moving image's edge is
    background). The second look, which the pipeline takes when the first poses end close, or not
    clearly apart while the area ratio says the sections differ in size or tissue fills both frames
    (``fills_frames``), scores afresh with masked scores (only where both
    images have data: tissue that fills a frame ends at the edge, it does not turn into
    background) on a grid where the fixed image has ``SECOND_LOOK_SIZE`` px even when it is a small
    crop, where interior structure, not the outline, decides: at the area ratio's scale and at
    ``SECOND_LOOK_SCALES``; it refines ``THOROUGH_PEAKS`` peaks (half of each mirror state) and
    checks them at ``CHECK_SCALES`` around their scale. Scores computed once are
    kept. Poses come best first, as working-resolution moving → fixed matrices, and the best of
    the other mirror state is always among them.
    """

    def __init__(self, pyramid: StructurePyramid, *, search_mirror: bool = True, coarse_step: float = 6.0,
                 fine_step: float = 2.0):
        moving, fixed = pyramid.moving, pyramid.fixed
        # scored on the search images: no stroke or fold outweighs the structure (the refinement keeps the pair's own)
        self.pyramid, self.coarse_step, self.fine_step = pyramid.for_search(), coarse_step, fine_step
        self.flips = (False, True) if search_mirror else (False,)
        self.area_scale = float(np.sqrt(max(fixed.mask.sum(), 1) / max(moving.mask.sum(), 1)))
        # the scale at which a moving pixel covers as much of the input as a fixed one (1 unless
        # preprocessing resampled the two differently): what a crop's true scale is
        self.pixel_scale = fixed.factor / moving.factor
        self.centres = centre_of_mass(moving.mask), centre_of_mass(fixed.mask)
        # tissue fills both images' frames: their outlines say nothing of the pose
        self.fills_frames = bool(moving.mask.mean() > FILLS_FRAME and fixed.mask.mean() > FILLS_FRAME)
        self._scorers: dict[tuple[int, bool], _Scorer] = {}
        self._coarse: dict[tuple[float, bool], list[Pose]] = {}

    def _fixed_at(self, size: int) -> int:
        """The pyramid level at which the fixed image's long side is ``size`` px (at most the working size).

        Poses are scored on the fixed image's grid: the second look would otherwise score a fixed
        image much smaller than the moving one (a crop) on a few dozen pixels.
        """
        longest = max(max(self.pyramid.moving.image.shape), max(self.pyramid.fixed.image.shape))
        return min(longest, round(size * longest / max(self.pyramid.fixed.image.shape)))

    @property
    def sizes_differ(self) -> bool:
        """The area ratio says the sections differ in pixel size by more than 15 %."""
        return abs(np.log(self.area_scale / self.pixel_scale)) > np.log(SIZES_DIFFER)

    @torch.inference_mode()
    def _evaluate(self, size: int, candidates, masked: bool) -> list[Pose]:
        if (size, masked) not in self._scorers:
            self._scorers[size, masked] = _Scorer(self.pyramid.level(self._fixed_at(size) if masked else size), masked)
        angles, flipped, scale = np.array(candidates, float).T
        matrices = pose_matrices(angles, flipped, scale, *self.centres)
        scores, shifts = self._scorers[size, masked](matrices)
        matrices[:, :2, 2] += shifts
        return [Pose(float(a % 360.0), bool(fl), float(s), m, float(sc))
                for a, fl, s, m, sc in zip(angles, flipped, scores, matrices, scale)]

    @staticmethod
    def _size(masked: bool) -> int:
        """The first search scores plain poses at ``SEARCH_SIZE``, the second look masked ones at
        ``SECOND_LOOK_SIZE``."""
        return SECOND_LOOK_SIZE if masked else SEARCH_SIZE

    def _coarse_poses(self, scale: float, masked: bool) -> list[Pose]:
        if (scale, masked) not in self._coarse:
            angles = np.arange(0.0, 360.0, self.coarse_step)
            self._coarse[scale, masked] = self._evaluate(
                self._size(masked), [(a, fl, scale) for fl in self.flips for a in angles], masked)
        return self._coarse[scale, masked]

    def _refined(self, peaks: list[Pose], masked: bool) -> list[Pose]:
        """The peaks and the angles between them and their coarse neighbours (those were scored already)."""
        offsets = [sign * d for d in np.arange(self.fine_step, self.coarse_step - self.fine_step / 2, self.fine_step)
                   for sign in (-1, 1)]
        return peaks + self._evaluate(self._size(masked), [(p.angle_deg + d, p.flipped, p.scale) for p in peaks
                                                           for d in offsets], masked)

    def _kept(self, poses: list[Pose], coarse: list[Pose], top_k: int) -> list[Pose]:
        kept = _distinct(poses, top_k, 3 * self.coarse_step)
        others = ([p for p in poses if p.flipped != kept[0].flipped]
                  or [p for p in coarse if p.flipped != kept[0].flipped])
        if len(self.flips) == 2 and others and all(p.flipped == kept[0].flipped for p in kept):
            kept[-1] = others[int(np.argmax([p.score for p in others]))]  # the other mirror state always gets its say
        return kept

    def first(self, top_k: int = 4) -> list[Pose]:
        coarse = self._coarse_poses(self.area_scale, masked=False)
        return self._kept(self._refined(_distinct(coarse, top_k, 3 * self.coarse_step), masked=False), coarse, top_k)

    def second_look(self, top_k: int = 4) -> list[Pose]:
        scales = [self.area_scale] + [s * self.pixel_scale for s in SECOND_LOOK_SCALES
                                      if abs(np.log(s * self.pixel_scale / self.area_scale)) > np.log(SIZES_DIFFER)]
        coarse = sum((self._coarse_poses(scale, True) for scale in scales), [])
        separation = 3 * self.coarse_step
        peaks = sum((_distinct([p for p in coarse if p.flipped == fl], THOROUGH_PEAKS // len(self.flips), separation)
                     for fl in self.flips), [])
        best_peaks = _distinct(self._refined(peaks, True), THOROUGH_PEAKS, separation)
        checked = self._evaluate(SECOND_LOOK_SIZE, [(p.angle_deg, p.flipped, p.scale * f)
                                                    for p in best_peaks for f in CHECK_SCALES], True)
        return self._kept(checked, coarse, top_k)


def search_pose(pyramid: StructurePyramid, *, search_mirror: bool = True, top_k: int = 4) -> list[Pose]:
    """The first search's ``top_k`` poses (see :class:`PoseSearch`)."""
    return PoseSearch(pyramid, search_mirror=search_mirror).first(top_k)
