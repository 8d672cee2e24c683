"""Initial pose search: centre of mass, tissue-area scale, exhaustive rotation and mirror search.

All candidate poses are warped in batched ``grid_sample`` calls and each gets its best
translation from an FFT cross-correlation, so its score is that of the best-placed pose rather
than of the centre-of-mass guess. Scores use tissue structure (the lightly smoothed inverted
image and its gradient magnitude), not one blurred intensity image, because stains are not
linearly related and the blurred outline of a section hardly differs from its mirror image or
its 180° turn. The top distinct poses are returned so later stages can decide between them.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.fft import next_fast_len

from .. import transforms
from .features import FeatureLevel, StructurePyramid
from .results import Pose

SEARCH_SIZE = 48
SIZES_DIFFER = 1.15  # an area-ratio scale further than this from 1 is in doubt: the second look also tries 1
CHECK_SIZE = 96
CHECK_SCALES = (0.9, 1.0, 1 / 0.9)  # around each peak's scale: neither scale guess is exact
THOROUGH_PEAKS = 8


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
    """Scores many moving → fixed poses in one batched warp; the best translation of each comes from an FFT.

    Returns, per pose, the normalised cross-correlation at the best shift and the shift (working pixels).
    """

    def __init__(self, level: FeatureLevel, max_shift: float = 0.25):
        self.level = level
        h, w = level.f_shape
        self.pad_shape = tuple(next_fast_len(n + int(np.ceil(max_shift * n)) + 1, real=True) for n in (h, w))
        fixed_features = level.fixed - level.fixed.mean((2, 3), keepdim=True)
        self.fixed_norm = fixed_features.flatten(1).norm()
        self.fixed_spectrum = torch.fft.rfft2(fixed_features, s=self.pad_shape)
        dy = torch.arange(self.pad_shape[0])
        dx = torch.arange(self.pad_shape[1])
        dy = torch.where(dy > self.pad_shape[0] // 2, dy - self.pad_shape[0], dy)
        dx = torch.where(dx > self.pad_shape[1] // 2, dx - self.pad_shape[1], dx)
        self.shift_y, self.shift_x = torch.meshgrid(dy, dx, indexing="ij")
        self.allowed = (self.shift_y.abs() <= max_shift * h) & (self.shift_x.abs() <= max_shift * w)
        self.factor = level.f_to_small[0, 0]

    def __call__(self, matrices: list[np.ndarray], chunk: int = 64):
        thetas = self.level.thetas(matrices)
        scores, shifts = [], []
        for start in range(0, len(thetas), chunk):
            warped = transforms.warp_tensor(self.level.moving, thetas[start:start + chunk], self.level.f_shape)
            warped = warped - warped.mean((2, 3), keepdim=True)
            norms = warped.flatten(1).norm(dim=1) * self.fixed_norm
            cross = (self.fixed_spectrum * torch.fft.rfft2(warped, s=self.pad_shape).conj()).sum(1)
            corr = torch.fft.irfft2(cross, s=self.pad_shape)
            corr = torch.where(self.allowed, corr, torch.full_like(corr, -torch.inf)).flatten(1)
            best, index = corr.max(1)
            scores.append(best / norms.clamp_min(1e-12))
            shifts.append(torch.stack([self.shift_x.flatten()[index], self.shift_y.flatten()[index]], 1))
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
    ``top_k`` distinct peaks at ``fine_step``. The second look, which the pipeline takes when the
    first poses end close or the area ratio says the sections differ in size, adds the same pixel
    size as a second scale (a crop that cuts the tissue makes the areas say nothing), refines
    ``THOROUGH_PEAKS`` peaks (half of each mirror state) and checks them at ``CHECK_SIZE`` px at
    ±10 % scale, where interior structure, not the outline, decides. Scores computed once are
    kept, so the second look costs only what it adds. Poses come best first, as working-resolution
    moving → fixed matrices, and the best of the other mirror state is always among them.
    """

    def __init__(self, pyramid: StructurePyramid, *, search_mirror: bool = True, coarse_step: float = 6.0,
                 fine_step: float = 2.0):
        moving, fixed = pyramid.moving, pyramid.fixed
        self.pyramid, self.coarse_step, self.fine_step = pyramid, coarse_step, fine_step
        self.flips = (False, True) if search_mirror else (False,)
        self.area_scale = float(np.sqrt(max(fixed.mask.sum(), 1) / max(moving.mask.sum(), 1)))
        self.centres = centre_of_mass(moving.mask), centre_of_mass(fixed.mask)
        self._scorers: dict[int, _Scorer] = {}
        self._coarse: dict[float, list[Pose]] = {}

    @property
    def sizes_differ(self) -> bool:
        """The area ratio says the sections differ in pixel size by more than 15 %."""
        return abs(np.log(self.area_scale)) > np.log(SIZES_DIFFER)

    @torch.inference_mode()
    def _evaluate(self, size: int, candidates) -> list[Pose]:
        if size not in self._scorers:
            self._scorers[size] = _Scorer(self.pyramid.level(size))
        angles, flipped, scale = np.array(candidates, float).T
        matrices = pose_matrices(angles, flipped, scale, *self.centres)
        scores, shifts = self._scorers[size](matrices)
        matrices[:, :2, 2] += shifts
        return [Pose(float(a % 360.0), bool(fl), float(s), m, float(sc))
                for a, fl, s, m, sc in zip(angles, flipped, scores, matrices, scale)]

    def _coarse_poses(self, scale: float) -> list[Pose]:
        if scale not in self._coarse:
            self._coarse[scale] = self._evaluate(SEARCH_SIZE, [(a, fl, scale) for fl in self.flips
                                                               for a in np.arange(0.0, 360.0, self.coarse_step)])
        return self._coarse[scale]

    def _refined(self, peaks: list[Pose]) -> list[Pose]:
        offsets = np.arange(-self.coarse_step, self.coarse_step + self.fine_step / 2, self.fine_step)
        return self._evaluate(SEARCH_SIZE, [(p.angle_deg + d, p.flipped, p.scale) for p in peaks for d in offsets])

    def _kept(self, poses: list[Pose], coarse: list[Pose], top_k: int) -> list[Pose]:
        kept = _distinct(poses, top_k, 3 * self.coarse_step)
        others = ([p for p in poses if p.flipped != kept[0].flipped]
                  or [p for p in coarse if p.flipped != kept[0].flipped])
        if len(self.flips) == 2 and others and all(p.flipped == kept[0].flipped for p in kept):
            kept[-1] = others[int(np.argmax([p.score for p in others]))]  # the other mirror state always gets its say
        return kept

    def first(self, top_k: int = 4) -> list[Pose]:
        coarse = self._coarse_poses(self.area_scale)
        return self._kept(self._refined(_distinct(coarse, top_k, 3 * self.coarse_step)), coarse, top_k)

    def second_look(self, top_k: int = 4) -> list[Pose]:
        coarse = self._coarse_poses(self.area_scale) + (self._coarse_poses(1.0) if self.sizes_differ else [])
        separation = 3 * self.coarse_step
        peaks = sum((_distinct([p for p in coarse if p.flipped == fl], THOROUGH_PEAKS // len(self.flips), separation)
                     for fl in self.flips), [])
        checked = self._evaluate(CHECK_SIZE, [(p.angle_deg, p.flipped, p.scale * f)
                                              for p in _distinct(self._refined(peaks), THOROUGH_PEAKS, separation)
                                              for f in CHECK_SCALES])
        return self._kept(checked, coarse, top_k)


def search_pose(pyramid: StructurePyramid, *, search_mirror: bool = True, top_k: int = 4) -> list[Pose]:
    """The first search's ``top_k`` poses (see :class:`PoseSearch`)."""
    return PoseSearch(pyramid, search_mirror=search_mirror).first(top_k)
