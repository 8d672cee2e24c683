"""What defines a training run: :class:`TrainingConfig` (stored in every checkpoint).

No torch at import: the ``histoaffine train`` parser shows these defaults without loading the engine.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

# augmentation fields that "augmentation strength" scales linearly, and the scale ranges it scales as powers
_AUGMENTATION = ("rotation_deg", "shear", "translation", "residual_rotation_deg", "residual_shear",
                 "residual_translation", "stain_jitter", "brightness", "contrast")
_SCALE_RANGES = ("scale_range", "residual_scale_range")
_TUPLES = ("scale_range", "residual_scale_range", "crop_range", "loss_sigmas")


def network_input_size() -> int:
    """Long side (px) of the working images a new network works at (imported late: the CLI parser needs no torch)."""
    from ..registration.network import NetworkConfig

    return NetworkConfig().input_long_side


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
    working_size: int = field(default_factory=network_input_size)  # long side of the working images
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
    # data description (for the record and for resuming from the CLI): see training.data.data_sources
    data: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in _TUPLES:
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainingConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in dict(data).items() if k in names}
        for key in _TUPLES:
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


def default_value(name: str):
    """The default of a :class:`TrainingConfig` field, read without building a config (no torch)."""
    return next(f.default for f in dataclasses.fields(TrainingConfig) if f.name == name)


def scaled_augmentation(strength: float) -> dict:
    """The augmentation fields at ``strength`` times the defaults (0: none, 1: the defaults); scale ranges as powers."""
    return {**{k: default_value(k) * strength for k in _AUGMENTATION},
            **{k: tuple(v ** strength for v in default_value(k)) for k in _SCALE_RANGES}}
