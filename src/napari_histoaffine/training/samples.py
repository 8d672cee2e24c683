"""Samples and loss: the random affine and stain augmentation of a pair, and what the network is scored by.

Both images of every sample get a random affine (the moving one additionally a residual misalignment
like what the pose search leaves), applied with :func:`transforms.warp_tensor` on the preprocessed
working images; stains are jittered in HED space *before* preprocessing, so one tissue teaches many
stains. The loss is the negative NCC between the moving image warped by the predicted theta and the
fixed image, plus the distance to the pair's known target where there is one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import transforms
from ..registration.network import AffineNet
from ..registration.grayscale import to_float
from ..registration.preprocess import prepare
from ..registration.similarity import ncc, smooth
from .config import TrainingConfig
from .data import TrainingPair, resize_float


def stain_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.3, brightness: float = 0.08,
                 contrast: float = 0.2) -> np.ndarray:
    """Random restaining: per-channel scale and shift in HED space (RGB only), then brightness and contrast."""
    from skimage.color import hed2rgb, rgb2hed

    img = to_float(image)
    if img.ndim == 3 and strength > 0:
        hed = rgb2hed(img)
        scale = rng.uniform(1 - strength, 1 + strength, 3)
        if rng.random() < 0.25:  # now and then one stain almost absent: a very different-looking stain
            scale[rng.integers(3)] *= rng.uniform(0.0, 0.3)
        shift = rng.uniform(-strength, strength, 3) * hed.reshape(-1, 3).std(0)
        img = hed2rgb(hed * scale + shift).astype(np.float32)
    if brightness > 0 or contrast > 0:
        c = rng.uniform(1 - contrast, 1 + contrast)
        b = rng.uniform(-brightness, brightness)
        mean = float(img.mean())
        img = (img - mean) * c + mean + b
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def random_affine(rng: np.random.Generator, shape, rotation_deg: float, scale_range, shear: float,
                  translation: float) -> np.ndarray:
    """Random rotation, scale, shear and shift about the centre of an image of ``shape`` (pixel matrix)."""
    h, w = shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    lo, hi = scale_range
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    sh = rng.uniform(-shear, shear)
    shear_m = np.array([[1.0, sh, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return transforms.compose(
        transforms.translation(-cx, -cy), shear_m, transforms.scaling(s),
        transforms.rotation(rng.uniform(-rotation_deg, rotation_deg)),
        transforms.translation(cx + rng.uniform(-translation, translation) * w,
                               cy + rng.uniform(-translation, translation) * h))


@dataclass
class Sample:
    """One network input pair on the fixed grid, ``(1, 1, H, W)`` tensors, and what is known about it."""

    moving: torch.Tensor
    fixed: torch.Tensor
    fixed_mask: torch.Tensor
    moving_valid: torch.Tensor         # 1 where the moving sample has pixels of its image (not the zero border)
    fixed_valid: torch.Tensor
    truth: np.ndarray | None = None    # moving-sample → fixed-sample pixels, where the pair's target is known
    pair: TrainingPair | None = None
    augmented: bool = True             # False: the pair as at inference (pose only), landmarks apply


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))[None, None]


def _warp(image: np.ndarray, matrix: np.ndarray, out_shape) -> torch.Tensor:
    theta = torch.from_numpy(transforms.to_theta(matrix, image.shape, out_shape)).float()[None]
    return transforms.warp_tensor(_tensor(image), theta, out_shape)


def _prepared(pair: TrainingPair, config: TrainingConfig, rng: np.random.Generator | None):
    moving, fixed = pair.moving, pair.fixed
    if pair.random_crop and rng is not None:
        h, w = fixed.shape[:2]
        lo, hi = config.crop_range
        ch, cw = max(16, round(h * rng.uniform(lo, hi))), max(16, round(w * rng.uniform(lo, hi)))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        moving = fixed = fixed[y0:y0 + ch, x0:x0 + cw]
    factor = 1.0
    if pair.factor is None:  # self pair: bring it to the working size first (cheap jitter and preprocessing)
        moving = fixed = resize_float(fixed, config.working_size / max(fixed.shape[:2]))
    else:
        factor = pair.factor
    if rng is not None:
        jitter = dict(strength=config.stain_jitter, brightness=config.brightness, contrast=config.contrast)
        moving, fixed = stain_jitter(moving, rng, **jitter), stain_jitter(fixed, rng, **jitter)
    return prepare(moving, factor), prepare(fixed, factor)


def make_sample(pair: TrainingPair, config: TrainingConfig, rng: np.random.Generator | None) -> Sample:
    """A training sample of ``pair``; ``rng=None`` gives the plain pair as at inference (pose only)."""
    pm, pf = _prepared(pair, config, rng)
    shape = pf.image.shape
    pose = pair.pose
    if rng is None:
        common = residual = transforms.identity()
    else:
        common = random_affine(rng, shape, config.rotation_deg, config.scale_range, config.shear, config.translation)
        residual = random_affine(rng, shape, config.residual_rotation_deg, config.residual_scale_range,
                                 config.residual_shear, config.residual_translation)
    to_sample = transforms.compose(pose, residual, common)       # moving working → sample grid
    moving = _warp(pm.image, to_sample, shape)
    fixed = _warp(pf.image, common, shape)
    fixed_mask = _warp(pf.mask.astype(np.float32), common, shape)
    moving_valid = _warp(np.ones(pm.image.shape, np.float32), to_sample, shape)
    fixed_valid = _warp(np.ones(shape, np.float32), common, shape)
    truth = None
    if pair.target is not None:
        truth = transforms.compose(transforms.invert(to_sample), pair.target, common)
    return Sample(moving, fixed, fixed_mask, moving_valid, fixed_valid, truth, pair, rng is not None)


def similarity(sample: Sample, theta: torch.Tensor, config: TrainingConfig) -> torch.Tensor:
    """NCC of the moving sample warped by ``theta`` and the fixed sample, weighted as ``config.loss_weight`` says.

    "valid" leaves out the zero border that an affine brings in: without it the network learns to
    zoom in on sections that fill the whole image (fewer border pixels, higher NCC, worse alignment).
    """
    shape = sample.fixed.shape[-2:]
    warped = transforms.warp_tensor(sample.moving, theta, shape)
    fixed = sample.fixed
    weight = None
    if config.loss_weight in ("valid", "tissue"):
        weight = transforms.warp_tensor(sample.moving_valid, theta, shape) * sample.fixed_valid
        if config.loss_weight == "tissue":
            weight = weight * sample.fixed_mask
    elif config.loss_weight != "none":
        raise ValueError(f"unknown loss_weight {config.loss_weight!r}: use none, valid or tissue")
    return torch.stack([ncc(smooth(warped, s), smooth(fixed, s), weight) for s in config.loss_sigmas]).mean(0)


_GRID = torch.tensor([[x, y, 1.0] for y in (-1.0, 0.0, 1.0) for x in (-1.0, 0.0, 1.0)]).T  # 3×3 grid, homogeneous


def _point_error(theta: torch.Tensor, sample: Sample) -> torch.Tensor:
    """Mean distance (normalised units, image side = 2) between where ``theta`` and the truth map a 3×3 grid."""
    shape = sample.fixed.shape[-2:]
    truth = torch.from_numpy(transforms.to_theta(sample.truth, sample.moving.shape[-2:], shape)).float()
    return torch.linalg.vector_norm((theta[0] - truth) @ _GRID, dim=0).mean()


def training_loss(model: AffineNet, sample: Sample, config: TrainingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative NCC, plus the weighted distance to the known target where there is one."""
    theta = model(sample.moving, sample.fixed)
    loss = -similarity(sample, theta, config).mean()
    if sample.truth is not None and config.target_weight > 0:
        loss = loss + config.target_weight * _point_error(theta, sample)
    return loss, theta
