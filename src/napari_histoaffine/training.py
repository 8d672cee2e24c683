"""Unsupervised training of the affine network, as in the method paper (no napari here).

One pair per forward pass, ``loss.backward()`` after each pair and an optimizer step every
``accumulation`` pairs; Adam with an exponential learning-rate decay per epoch; the loss is the
global negative NCC between the moving image warped by the predicted theta and the fixed image.
Both images of every sample get a random affine (the moving one additionally a residual
misalignment like what the pose search leaves), applied with :func:`transforms.warp_tensor` on
the preprocessed working images; stains are jittered in HED space *before* preprocessing, so one
tissue teaches many stains.

Data sources become :class:`TrainingPair` objects: pairs tables and image arrays (the moving image is posed onto
the fixed grid by :func:`~napari_histoaffine.registration.pose.search_pose` once per pair, exactly as at inference), folders of
images and scikit-image's immunohistochemistry sample (each image paired with a re-stained,
transformed copy of itself, optionally as random crops).

:func:`train` is the one training loop, used by the CLI (``histoaffine train``, through
:func:`add_train_arguments` / :func:`run_train`) and by the napari dock: progress goes to an
``on_update`` callback, ``should_stop`` is polled before every pair.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io as _stdio
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import transforms
from .errors import InputError
from .evaluation.metrics import image_diagonal
from .files.atomic import atomic_write, write_json
from .files.images import read_image
from .files.tables import read_landmarks, read_pairs_table
from .registration.features import StructurePyramid
from .registration.network import AffineNet, NetworkConfig, count_parameters
from .registration.pose import search_pose
from .registration.preprocess import prepare, prepare_pair, resample, to_float, working_factor
from .registration.refine import refine_affine
from .registration.similarity import ncc, smooth
from .registration.weights import file_sha256, load_model, read_model_metadata, save_model

__all__ = ["TrainingConfig", "TrainingPair", "TrainingData", "TrainingUpdate", "TrainingOutcome", "Sample",
           "ihc_pairs", "folder_pairs", "array_pair", "table_pairs", "load_training_data", "make_sample", "stain_jitter",
           "train", "add_train_arguments", "run_train"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_LOG_COLUMNS = ("step", "loss", "val_ncc", "val_rtre", "val_error", "lr", "seconds")


# --------------------------------------------------------------------------------------------- config
NETWORK_SIZE = NetworkConfig().input_long_side


@dataclass
class TrainingConfig:
    """Everything that defines a training run (JSON-serialisable, stored in every checkpoint)."""

    steps: int = 1000                     # optimizer steps in all (ignored when ``epochs`` is set)
    epochs: int | None = None             # alternatively: epochs × steps_per_epoch
    steps_per_epoch: int | None = 1000    # None: max(25, ceil(training pairs / accumulation)); an "epoch" of a few
                                          # pairs decays the learning rate long before the network has learnt
    accumulation: int = 2                 # pairs per optimizer step (one pair per forward pass)
    lr: float = 1e-3
    gamma: float = 0.9                    # ExponentialLR factor per epoch
    working_size: int = NETWORK_SIZE      # long side of the working images: the size the network works at
    seed: int = 0
    validate_every: int = 500             # optimizer steps between validations
    validation_samples: int = 8           # synthetic validation samples when no pairs are held out
    out_dir: str | None = None            # model.safetensors (best), last.safetensors, log.csv, loss.png
    network: dict = field(default_factory=dict)   # NetworkConfig overrides for a new network (e.g. width)
    # augmentation applied to both images (relative pose unchanged). Small: at inference the fixed
    # image keeps its orientation and the pose search has removed the large rotation; the paper's
    # any-angle augmentation of both images slowed learning beyond a CPU budget.
    rotation_deg: float = 10.0
    scale_range: tuple = (0.9, 1.1)
    shear: float = 0.02
    translation: float = 0.05             # fraction of the image side
    # residual misalignment of the moving image (what the pose search leaves: median 1.3°, a few % scale)
    residual_rotation_deg: float = 4.0
    residual_scale_range: tuple = (0.93, 1.07)
    residual_shear: float = 0.03
    residual_translation: float = 0.03
    # appearance, before preprocessing
    stain_jitter: float = 0.3             # HED per-channel scale ±s, shift ±s·std
    brightness: float = 0.08
    contrast: float = 0.2
    crop_range: tuple = (0.35, 0.9)       # side fraction of random crops (sources with random_crop)
    # loss
    loss_weight: str = "valid"            # "none" (whole grid, the paper), "valid" (where both images have pixels),
                                          # "tissue" (valid × fixed tissue mask)
    loss_sigmas: tuple = (1.0, 4.0)       # NCC averaged over these Gaussian smoothings (a wide basin and a sharp peak)
    target_weight: float = 10.0           # weight of the grid distance to the pair's known target (self pairs: the
                                          # augmentation; real pairs: the refinement's result); 0: NCC alone, the paper
    # data description (for the record and for resuming from the CLI)
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ("scale_range", "residual_scale_range", "crop_range", "loss_sigmas"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in dict(data).items() if k in names}
        for key in ("scale_range", "residual_scale_range", "crop_range", "loss_sigmas"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)

    def epoch_steps(self, n_pairs: int) -> int:
        if self.steps_per_epoch:
            return max(1, int(self.steps_per_epoch))
        return max(25, math.ceil(max(1, n_pairs) / max(1, self.accumulation)))

    def total_steps(self, n_pairs: int) -> int:
        if self.epochs is not None:
            return int(self.epochs) * self.epoch_steps(n_pairs)
        return int(self.steps)


# ----------------------------------------------------------------------------------------------- data
@dataclass
class TrainingPair:
    """A source of training samples: moving and fixed pixels (RGB or gray) and the pose between them.

    ``pose`` maps moving working pixels to fixed working pixels (the prepared images of
    ``moving``/``fixed`` at ``factor``): where the network starts. ``target`` is the best known
    moving → fixed matrix, the network's goal: the identity for self pairs (``moving is fixed``, a
    per-sample factor that fits ``working_size``), the iterative NCC refinement's result for real
    pairs (a teacher that needs no landmarks), ``None`` where unknown. Landmarks (working pixels of
    moving, original pixels of fixed) allow rTRE in validation.
    """

    name: str
    moving: np.ndarray
    fixed: np.ndarray
    pose: np.ndarray = field(default_factory=transforms.identity, repr=False)
    factor: float | None = None           # None: fit the long side to working_size at sample time
    random_crop: bool = False
    moving_landmarks: np.ndarray | None = field(default=None, repr=False)   # working moving pixels
    fixed_landmarks: np.ndarray | None = field(default=None, repr=False)    # original fixed pixels
    fixed_to_original: np.ndarray | None = field(default=None, repr=False)  # working fixed → original fixed
    fixed_diagonal: float | None = None
    target: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.target is None and self.self_pair:
            self.target = transforms.identity()

    @property
    def self_pair(self) -> bool:
        return self.moving is self.fixed


@dataclass
class TrainingData:
    train: list
    validation: list
    description: dict = field(default_factory=dict)


def _resize(image: np.ndarray, factor: float) -> np.ndarray:
    """Any image as float in [0, 1], colour kept, resized as the preprocessing does."""
    return resample(to_float(image), factor)[0]


def ihc_pairs(crops: bool = True) -> list[TrainingPair]:
    """scikit-image's immunohistochemistry sample as a self pair (plus a random-crop variant)."""
    from skimage import data

    image = to_float(data.immunohistochemistry())
    pairs = [TrainingPair("ihc", image, image)]
    if crops:
        pairs.append(TrainingPair("ihc-crops", image, image, random_crop=True))
    return pairs


def folder_pairs(folder, working_size: int = NETWORK_SIZE, crops: bool = True,
                 holdout: Sequence[str] = ()) -> list[TrainingPair]:
    """Every image in ``folder`` (but those with a ``holdout`` substring in the name) as a self pair.

    Images are kept at up to twice the working size, for sharp crops.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"training folder not found: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not _held_out(p, holdout))
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) left in training folder {root}")
    pairs = []
    for path in files:
        level = read_image(path, max_long_side=2 * working_size)
        image = _resize(level.data, min(1.0, 2 * working_size / max(level.data.shape[:2])))
        pairs.append(TrainingPair(path.name, image, image, random_crop=False))
        if crops:
            pairs.append(TrainingPair(path.name + "-crops", image, image, random_crop=True))
    return pairs


def array_pair(moving, fixed, moving_landmarks_xy=None, fixed_landmarks_xy=None,
               working_size: int = NETWORK_SIZE, *, name: str = "pair", full_shapes=None,
               teacher: bool = True) -> TrainingPair:
    """A training pair of two in-memory sections (e.g. napari layers), posed once by the rotation search.

    With ``teacher`` the refinement of the search's candidates gives the pair's ``target`` and its
    winning candidate the pose; without, the pose is the search's first candidate, as the network
    alone gets it at inference (validation pairs). Landmarks ``(x, y)`` (used when both are given)
    are pixels of the full-resolution images, whose ``(rows, cols)`` are ``full_shapes``
    ``(moving, fixed)`` when the arrays are reduced levels.
    """
    moving, fixed = np.asarray(moving), np.asarray(fixed)
    moving_full, fixed_full = full_shapes or (moving.shape, fixed.shape)
    factor = working_factor([moving.shape, fixed.shape], working_size)
    prepared_moving, prepared_fixed = prepare_pair(moving, fixed, working_size)
    pyramid = StructurePyramid(prepared_moving, prepared_fixed)
    poses = search_pose(pyramid)
    pose, target = poses[0].matrix, None
    if teacher:
        refined = refine_affine(pyramid, [p.matrix for p in poses])
        pose, target = poses[refined.start_index].matrix, refined.matrix
    moving_lm = fixed_lm = None
    if moving_landmarks_xy is not None and fixed_landmarks_xy is not None:
        to_full = transforms.compose(prepared_moving.to_input, transforms.resample_matrix(moving.shape, moving_full))
        moving_lm = transforms.apply_to_points(transforms.invert(to_full), np.asarray(moving_landmarks_xy, float))
        fixed_lm = np.asarray(fixed_landmarks_xy, float)
    result = TrainingPair(
        name, _resize(moving, factor), _resize(fixed, factor), pose, factor=1.0,
        moving_landmarks=moving_lm, fixed_landmarks=fixed_lm,
        fixed_to_original=transforms.compose(prepared_fixed.to_input, transforms.resample_matrix(fixed.shape, fixed_full)),
        fixed_diagonal=image_diagonal(fixed_full), target=target)
    if result.moving.shape[:2] != prepared_moving.image.shape or result.fixed.shape[:2] != prepared_fixed.image.shape:
        raise AssertionError("working shapes of the pair differ from preprocessing")  # pragma: no cover
    return result


_POSE_CACHE: dict = {}


def _table_pair(pair, working_size: int, teacher: bool) -> TrainingPair:
    key = (pair.moving_image, pair.fixed_image, pair.moving_landmarks, pair.fixed_landmarks, working_size, teacher)
    if key not in _POSE_CACHE:
        moving_level = read_image(pair.moving_image, max_long_side=working_size)
        fixed_level = read_image(pair.fixed_image, max_long_side=working_size)
        landmarks = (None, None)
        if pair.moving_landmarks and pair.fixed_landmarks and Path(pair.moving_landmarks).is_file() \
                and Path(pair.fixed_landmarks).is_file():
            landmarks = (read_landmarks(pair.moving_landmarks), read_landmarks(pair.fixed_landmarks))
        _POSE_CACHE[key] = array_pair(moving_level.data, fixed_level.data, *landmarks, working_size, name=pair.case,
                                      full_shapes=(moving_level.full_shape, fixed_level.full_shape), teacher=teacher)
    return _POSE_CACHE[key]


def _until_stopped(items, should_stop: Callable[[], bool] | None):
    """The items, one by one, until ``should_stop`` says so (polled before each)."""
    for item in items:
        if should_stop is not None and should_stop():
            return
        yield item


def table_pairs(table, working_size: int = NETWORK_SIZE, holdout: Sequence[str] = (),
                on_progress: Callable[[str], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> tuple[list, list]:
    """Pairs of an ANHIR table, posed once each; pairs with a ``holdout`` substring in a file name go to validation.

    ``should_stop`` is polled before every pair (posing one takes a fraction of a second): when it
    says so, the pairs posed so far are returned.
    """
    rows = read_pairs_table(table)
    train_pairs, val_pairs = [], []
    for i, row in enumerate(_until_stopped(rows, should_stop)):
        held = _held_out(row.moving_image, holdout) or _held_out(row.fixed_image, holdout)
        if on_progress is not None:
            on_progress(f"pose search {i + 1}/{len(rows)}: {row.case}")
        (val_pairs if held else train_pairs).append(_table_pair(row, working_size, teacher=not held))
    return train_pairs, val_pairs


def _held_out(path, holdout: Sequence[str]) -> bool:
    name = Path(path).name.lower()
    return any(h.lower() in name for h in holdout if h)


def load_training_data(config: TrainingConfig, on_progress: Callable[[str], None] | None = None) -> TrainingData:
    """Build the pairs described by ``config.data`` (keys: pairs, folders, ihc, crops, holdout)."""
    spec = config.data
    crops = bool(spec.get("crops", True))
    train_pairs, val_pairs = [], []
    for table in spec.get("pairs", []) or []:
        t, v = table_pairs(table, config.working_size, spec.get("holdout", []) or [], on_progress)
        train_pairs += t
        val_pairs += v
    for folder in spec.get("folders", []) or []:
        train_pairs += folder_pairs(folder, config.working_size, crops, spec.get("holdout", []) or [])
    if spec.get("ihc"):
        train_pairs += ihc_pairs(crops)
    if not train_pairs:
        raise InputError("no training data: give pairs tables, folders of images or the built-in ihc sample")
    return TrainingData(train_pairs, val_pairs, dict(spec))


# -------------------------------------------------------------------------------------------- samples
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
        moving = fixed = _resize(fixed, config.working_size / max(fixed.shape[:2]))
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


def _similarity(sample: Sample, theta: torch.Tensor, config: TrainingConfig) -> torch.Tensor:
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


def _loss(model: AffineNet, sample: Sample, config: TrainingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative NCC, plus the weighted distance to the known target where there is one."""
    theta = model(sample.moving, sample.fixed)
    loss = -_similarity(sample, theta, config).mean()
    if sample.truth is not None and config.target_weight > 0:
        loss = loss + config.target_weight * _point_error(theta, sample)
    return loss, theta


# ----------------------------------------------------------------------------------------- the loop
@dataclass
class TrainingUpdate:
    """Progress of :func:`train`, sent to ``on_update`` after every optimizer step and validation."""

    step: int
    total_steps: int
    loss: float | None
    validation: float | None           # mean NCC after the network on the validation samples
    state: str                         # "validating", "training", "stopped" or "finished"
    seconds: float
    eta: float | None
    lr: float | None = None
    metrics: dict = field(default_factory=dict)


@dataclass
class TrainingOutcome:
    model: AffineNet
    steps: int
    total_steps: int
    stopped: bool
    seconds: float
    initial_validation: dict
    final_validation: dict
    best_validation: float | None
    best_step: int | None
    history: list
    best_path: Path | None = None
    last_path: Path | None = None
    log_path: Path | None = None
    plot_path: Path | None = None
    steps_per_second: float | None = None


def _sample_order(n: int, seed: int, index: int) -> int:
    cycle, position = divmod(index, n)
    return int(np.random.default_rng([seed, 7, cycle]).permutation(n)[position])


def validation_samples(config: TrainingConfig, train_pairs: list, validation_pairs: list) -> list[Sample]:
    """Fixed validation samples: held-out pairs as at inference, else seeded synthetic samples."""
    if validation_pairs:
        return [make_sample(p, config, None) for p in validation_pairs]
    return [make_sample(train_pairs[i % len(train_pairs)], config, np.random.default_rng([config.seed, 99, i]))
            for i in range(max(1, config.validation_samples))]


@torch.inference_mode()
def evaluate(model: AffineNet, samples: list[Sample], config: TrainingConfig | None = None) -> dict:
    """Mean NCC after the network; mean rTRE (median per pair) where landmarks exist; synthetic error where known."""
    config = TrainingConfig() if config is None else config
    model.eval()
    nccs, rtres, errors = [], [], []
    for s in samples:
        shape = s.fixed.shape[-2:]
        theta = model(s.moving, s.fixed)
        nccs.append(float(_similarity(s, theta, config)))
        matrix = transforms.from_theta(theta[0].numpy(), shape, shape)
        pair = s.pair
        if s.truth is not None:
            h, w = shape
            grid = np.stack(np.meshgrid(np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5)), -1).reshape(-1, 2)
            diff = transforms.apply_to_points(matrix, grid) - transforms.apply_to_points(s.truth, grid)
            errors.append(float(np.linalg.norm(diff, axis=1).mean() / np.hypot(h, w)))
        if pair is not None and not s.augmented and pair.moving_landmarks is not None:
            full = transforms.compose(pair.pose, matrix, pair.fixed_to_original)
            moved = transforms.apply_to_points(full, pair.moving_landmarks)
            n = min(len(moved), len(pair.fixed_landmarks))
            rtres.append(float(np.median(np.linalg.norm(moved[:n] - pair.fixed_landmarks[:n], axis=1))
                               / pair.fixed_diagonal))
    model.train()
    return {"val_ncc": float(np.mean(nccs)) if nccs else None,
            "val_rtre": float(np.mean(rtres)) if rtres else None,
            "val_error": float(np.mean(errors)) if errors else None}


def _optim_path(checkpoint) -> Path:
    return Path(checkpoint).with_suffix(".optim.pt")


def _save_checkpoint(path: Path, model, optimizer, scheduler, config, step, extra) -> None:
    save_model(path, model, extra={"training": config.to_dict(), "step": step, **extra})
    buffer = _stdio.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}, buffer)
    with atomic_write(_optim_path(path), "wb") as fh:
        fh.write(buffer.getvalue())


def _fmt(v) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def _write_log(path: Path, history: list) -> None:
    with atomic_write(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(_LOG_COLUMNS)
        for row in history:
            writer.writerow([_fmt(row.get(c)) for c in _LOG_COLUMNS])


def _read_log(path: Path, up_to_step: int) -> list:
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out = {"step": int(row["step"])}
            for c in _LOG_COLUMNS[1:]:
                out[c] = float(row[c]) if row.get(c) not in (None, "") else None
            if out["step"] <= up_to_step:
                rows.append(out)
    return rows


def _plot(path: Path, history: list) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    rows = [r for r in history if r.get("loss") is not None]
    if rows:
        steps = np.array([r["step"] for r in rows])
        loss = np.array([r["loss"] for r in rows])
        ax.plot(steps, loss, color="0.75", lw=0.8, label="training loss (−NCC)")
        k = max(1, len(loss) // 20)
        if k > 1:
            ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), color="C0", label=f"mean of {k}")
    val = [r for r in history if r.get("val_ncc") is not None]
    if val:
        ax.plot([r["step"] for r in val], [-r["val_ncc"] for r in val], "o-", color="C3", label="validation −NCC")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")


def train(config: TrainingConfig, pairs, *, validation: list | None = None, model: AffineNet | None = None,
          resume=None, on_update: Callable[[TrainingUpdate], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainingOutcome:
    """Train (from scratch, from ``model``, or resuming the checkpoint ``resume``) and return the outcome.

    ``pairs`` is a list of :class:`TrainingPair` or a :class:`TrainingData` (its validation pairs are
    used unless ``validation`` is given). Nothing is printed: progress goes to ``on_update``.
    ``should_stop`` is polled before every pair; stopping saves the last checkpoint.
    """
    if isinstance(pairs, TrainingData):
        validation = pairs.validation if validation is None else validation
        pairs = pairs.train
    pairs = list(pairs)
    if not pairs:
        raise InputError("no training pairs")
    validation = list(validation or [])
    out = Path(config.out_dir) if config.out_dir else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    best_path = out / "model.safetensors" if out else None
    last_path = out / "last.safetensors" if out else None
    log_path = out / "log.csv" if out else None
    plot_path = out / "loss.png" if out else None

    start_step, best_value, best_step, history = 0, None, None, []
    optim_state = None
    if resume is not None:
        model = load_model(resume)
        extra = read_model_metadata(resume)["extra"]
        start_step = int(extra.get("step", 0))
        best_value, best_step = extra.get("best_validation"), extra.get("best_step")
        if _optim_path(resume).is_file():
            optim_state = torch.load(_optim_path(resume), weights_only=True)
        if log_path is not None:
            history = _read_log(log_path, start_step)
    elif model is None:
        torch.manual_seed(config.seed)
        model = AffineNet(NetworkConfig.from_dict({**config.network, "input_long_side": config.working_size}))
    if model.config.input_long_side != config.working_size:
        raise InputError(f"the network works at {model.config.input_long_side} px: train it at that working size, "
                         f"not {config.working_size}")
    model.train()

    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.gamma)
    if optim_state is not None:
        optimizer.load_state_dict(optim_state["optimizer"])
        scheduler.load_state_dict(optim_state["scheduler"])
    total = config.total_steps(len(pairs))
    per_epoch = config.epoch_steps(len(pairs))
    accumulation = max(1, int(config.accumulation))
    val_samples = validation_samples(config, pairs, validation)
    clock = time.perf_counter()
    state = {"best_value": best_value, "best_step": best_step}

    def emit(step, loss, state_name, metrics=None):
        if on_update is None:
            return
        elapsed = time.perf_counter() - clock
        done = step - start_step
        eta = elapsed / done * (total - step) if done > 0 else None
        on_update(TrainingUpdate(step, total, loss, (metrics or {}).get("val_ncc"), state_name, elapsed, eta,
                                 optimizer.param_groups[0]["lr"], dict(metrics or {})))

    def save_all(step, metrics):
        if out is None:
            return
        extra = {"validation": metrics, "best_validation": state["best_value"], "best_step": state["best_step"]}
        _save_checkpoint(last_path, model, optimizer, scheduler, config, step, extra)
        _write_log(log_path, history)
        _plot(plot_path, history)

    def validate(step):
        emit(step, None, "validating")
        metrics = evaluate(model, val_samples, config)
        value = metrics["val_ncc"]
        if state["best_value"] is None or (value is not None and value > state["best_value"]):
            state["best_value"], state["best_step"] = value, step
            state["best_model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if out is not None:
                _save_checkpoint(best_path, model, optimizer, scheduler, config, step,
                                 {"validation": metrics, "best_validation": value, "best_step": step})
        return metrics

    seconds_offset = history[-1]["seconds"] if history and history[-1].get("seconds") else 0.0
    initial = validate(start_step)
    if history and history[-1]["step"] == start_step:
        history[-1].update({k: v for k, v in initial.items() if v is not None})
    else:
        history.append({"step": start_step, "loss": None, "lr": optimizer.param_groups[0]["lr"],
                        "seconds": 0.0, **initial})
    emit(start_step, None, "training", initial)
    metrics = initial
    stopped = False
    step = start_step
    while step < total and not stopped:
        optimizer.zero_grad(set_to_none=True)
        losses = []
        for k in range(accumulation):
            if should_stop is not None and should_stop():
                stopped = True
                break
            index = step * accumulation + k
            rng = np.random.default_rng([config.seed, index])
            sample = make_sample(pairs[_sample_order(len(pairs), config.seed, index)], config, rng)
            loss, _ = _loss(model, sample, config)
            (loss / accumulation).backward()
            losses.append(float(loss.detach()))
        if stopped:
            break
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        step += 1
        if step % per_epoch == 0:
            scheduler.step()
        row = {"step": step, "loss": float(np.mean(losses)), "lr": lr,
               "seconds": seconds_offset + time.perf_counter() - clock}
        history.append(row)
        metrics = {}
        if step % max(1, config.validate_every) == 0 or step == total:
            metrics = validate(step)
            row.update(metrics)
            save_all(step, metrics)
        emit(step, row["loss"], "training", metrics)
    if stopped or not metrics:
        save_all(step, metrics)
    final = metrics if metrics else evaluate(model, val_samples, config)
    seconds = time.perf_counter() - clock
    emit(step, history[-1].get("loss"), "stopped" if stopped else "finished", final)
    outcome = TrainingOutcome(
        model=model, steps=step, total_steps=total, stopped=stopped, seconds=seconds, initial_validation=initial,
        final_validation=final, best_validation=state["best_value"], best_step=state["best_step"], history=history,
        best_path=best_path, last_path=last_path, log_path=log_path, plot_path=plot_path,
        steps_per_second=(step - start_step) / seconds if seconds > 0 and step > start_step else None)
    outcome.best_state = state.get("best_model")
    return outcome


# ------------------------------------------------------------------------------------------------ CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``histoaffine train``."""
    d = TrainingConfig()
    data = parser.add_argument_group("training data")
    data.add_argument("--pairs", action="append", default=[], metavar="PAIRS.csv",
                      help="ANHIR pairs table (repeatable); each pair is posed once by the rotation search")
    data.add_argument("--folder", action="append", default=[], metavar="DIR",
                      help="folder of images, each paired with a re-stained, transformed copy of itself (repeatable)")
    data.add_argument("--ihc", action="store_true", help="use scikit-image's immunohistochemistry sample")
    data.add_argument("--no-crops", action="store_true", help="no random-crop variants of folder/ihc images")
    data.add_argument("--holdout-stains", default="", metavar="A,B",
                      help="pairs whose image file names contain one of these substrings are used for validation only")
    opt = parser.add_argument_group("training")
    opt.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default {d.steps})")
    opt.add_argument("--accumulation", type=int, default=None, help=f"pairs per optimizer step (default {d.accumulation})")
    opt.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {d.lr:g})")
    opt.add_argument("--gamma", type=float, default=None, help=f"learning-rate decay per epoch (default {d.gamma})")
    opt.add_argument("--steps-per-epoch", type=int, default=None, help="optimizer steps per epoch (default: one pass, at least 25)")
    opt.add_argument("--working-size", type=int, default=None, help=f"working long side in pixels (default {d.working_size})")
    opt.add_argument("--seed", type=int, default=None, help=f"random seed (default {d.seed})")
    opt.add_argument("--validate-every", type=int, default=None, help=f"optimizer steps between validations (default {d.validate_every})")
    opt.add_argument("--width", type=int, default=None, help="network width for a new network (default: NetworkConfig)")
    opt.add_argument("--loss-weight", choices=("none", "valid", "tissue"), default=None,
                     help="NCC over the whole grid (none, the paper), where both images have pixels (valid, default) "
                          "or valid × fixed tissue mask (tissue)")
    opt.add_argument("--init", default="none", metavar="default|PATH|none",
                     help="start from the shipped weights, a weights file, or a new network (default none)")
    opt.add_argument("--resume", default=None, metavar="CHECKPOINT", help="continue a run from its last.safetensors")
    opt.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    outg = parser.add_argument_group("output")
    outg.add_argument("--out", default=None, metavar="DIR",
                      help="writes DIR/model.safetensors (best), last.safetensors, log.csv, loss.png")
    outg.add_argument("--ship", action="store_true",
                      help="copy the final weights to the package's models/default.safetensors (+ default.json)")
    outg.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _config_from_args(args) -> TrainingConfig:
    base = TrainingConfig()
    if args.resume:
        extra = read_model_metadata(args.resume)["extra"]
        if "training" in extra:
            base = TrainingConfig.from_dict(extra["training"])
    values = base.to_dict()
    for name in ("steps", "accumulation", "lr", "gamma", "steps_per_epoch", "working_size", "seed", "validate_every"):
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    if args.width is not None:
        values["network"] = {**values.get("network", {}), "width": args.width}
    if args.loss_weight:
        values["loss_weight"] = args.loss_weight
    if args.out:
        values["out_dir"] = str(Path(args.out))
    if args.pairs or args.folder or args.ihc or not values.get("data"):
        values["data"] = {"pairs": [str(Path(p).resolve()) for p in args.pairs],
                          "folders": [str(Path(p).resolve()) for p in args.folder], "ihc": bool(args.ihc),
                          "crops": not args.no_crops,
                          "holdout": [s.strip() for s in args.holdout_stains.split(",") if s.strip()]}
    return TrainingConfig.from_dict(values)


def ship(weights: Path, config: TrainingConfig, outcome: TrainingOutcome, command: str) -> Path:
    """Copy ``weights`` into the package as the default model and write its card (models/default.json)."""
    target_dir = Path(__file__).resolve().parent / "models"
    target_dir.mkdir(exist_ok=True)
    target = target_dir / "default.safetensors"
    with atomic_write(target, "wb") as fh:
        fh.write(Path(weights).read_bytes())
    model = load_model(target)
    meta = read_model_metadata(target)
    write_json(target.with_suffix(".json"), {
        "sha256": file_sha256(target), "network": meta["config"], "training": config.to_dict(),
        "data": config.data, "command": command, "wall_time_s": round(outcome.seconds, 1),
        "parameters": count_parameters(model), "size_bytes": target.stat().st_size, "steps": meta["extra"].get("step"),
        "validation": meta["extra"].get("validation")})
    return target


def run_train(args) -> int:
    """Run ``histoaffine train`` from parsed arguments; returns the exit code."""
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        config = _config_from_args(args)
        if not config.out_dir:
            raise InputError("give --out DIR for the checkpoints and the log")
        if args.ship and not args.out:
            raise InputError("--ship needs --out")
        say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
        say("preparing training data …")
        data = load_training_data(config, on_progress=None if args.quiet else lambda m: print(m, file=sys.stderr, end="\r"))
        say(f"\n{len(data.train)} training sources, {len(data.validation)} validation pairs")
        model = None
        if not args.resume and args.init and args.init != "none":
            if args.init == "default":
                from .registration.weights import load_default_model
                model = load_default_model()
                if model is None:
                    say("no shipped default model: starting from a new network")
            else:
                model = load_model(args.init)
        bar = None
        if not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=config.total_steps(len(data.train)), unit="step", file=sys.stderr)

        def on_update(u: TrainingUpdate):
            if bar is None:
                return
            bar.n = u.step
            post = {}
            if u.loss is not None:
                post["loss"] = f"{u.loss:.4f}"
            if u.validation is not None:
                post["val_ncc"] = f"{u.validation:.4f}"
            if u.metrics.get("val_rtre") is not None:
                post["rTRE"] = f"{u.metrics['val_rtre']:.4f}"
            bar.set_postfix(post, refresh=False)
            bar.set_description(u.state)
            bar.refresh()

        try:
            outcome = train(config, data, model=model, resume=args.resume, on_update=on_update)
        except KeyboardInterrupt:
            print("\ninterrupted: resume with --resume " + str(Path(config.out_dir) / "last.safetensors"), file=sys.stderr)
            return 130
        finally:
            if bar is not None:
                bar.close()
        print(json.dumps({"steps": outcome.steps, "seconds": round(outcome.seconds, 1),
                          "steps_per_second": outcome.steps_per_second, "initial": outcome.initial_validation,
                          "final": outcome.final_validation, "best_validation": outcome.best_validation,
                          "best_step": outcome.best_step, "best": str(outcome.best_path)}, indent=2))
        if args.ship:
            # the state after the last step, as in the paper: validation is watched, not used to choose
            target = ship(outcome.last_path, config, outcome, " ".join(["histoaffine"] + sys.argv[1:]))
            say(f"shipped {target}")
        return 0
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
