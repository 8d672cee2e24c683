"""Patch-based affine registration network (method paper, section 2.3). Torch only.

The moving and fixed images (grayscale, inverted, background 0, same shape) are padded with zeros
(bottom/right) to the next multiple of ``patch_size`` and unfolded into non-overlapping patches that
form the batch dimension. A shared, lightweight ResNet-like extractor with GroupNorm (never
BatchNorm: the number of patches changes from pair to pair) turns every patch into a small feature
map. Moving and fixed features are concatenated per patch and merged by 2-D convolutions (feature
combiner); a 3-D convolution then mixes neighbouring patches (the patch grid is the depth axis), the
patch maps are tiled back into one 2-D map, and a *shared* strided 2-D convolution is applied
``max(1, ceil(log2(max(gy, gx))))`` times, so the receptive field grows with the image while the
number of parameters does not. Adaptive average pooling and fully connected layers give the six
numbers of the ``affine_grid`` theta (``align_corners=False``) that warps the moving image onto the
fixed grid: ``grid_sample(moving, affine_grid(theta, fixed.shape)) ≈ fixed``. The last layer starts
at zero weights and an identity bias, so an untrained network returns exactly the identity.

Models are stored as safetensors files; the JSON config (and optional extra information) lives in
the file's metadata, so loading needs no pickle.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

__all__ = ["NetworkConfig", "AffineNet", "count_parameters", "save_model", "load_model", "file_sha256"]

_IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_FORMAT = "napari-histoaffine/affinenet/1"


@dataclass
class NetworkConfig:
    """Every constructor argument of :class:`AffineNet` (JSON-serialisable)."""

    patch_size: int = 224
    in_channels: int = 1
    width: int = 32                      # channels after the stem; stage k has width * stage_multipliers[k]
    stage_multipliers: tuple = (2, 4, 4)  # one stride-2 residual stage each: 56 -> 28 -> 14 -> 7 for patch 224
    blocks_per_stage: int = 1
    stem_kernel: int = 4
    stem_stride: int = 4
    groups: int = 8                      # GroupNorm groups (reduced automatically to divide the channels)
    combiner_channels: int = 128
    combiner_layers: int = 2
    global_channels: int = 128
    head_hidden: int = 64
    input_long_side: int = 224           # long side (px) of the working images the network is trained on and fed

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stage_multipliers"] = list(self.stage_multipliers)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "NetworkConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown network config keys: {sorted(unknown)}")
        data = dict(data)
        if "stage_multipliers" in data:
            data["stage_multipliers"] = tuple(int(v) for v in data["stage_multipliers"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "NetworkConfig":
        return cls.from_dict(json.loads(text))

    @property
    def feature_channels(self) -> int:
        return self.width * (self.stage_multipliers[-1] if self.stage_multipliers else 1)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    g = max(1, math.gcd(channels, max(1, groups)))
    return nn.GroupNorm(g, channels)


class _BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs) with GroupNorm and a projection shortcut when needed."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(cout, groups)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm(cout, groups))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


class _FeatureExtractor(nn.Module):
    """Shared ResNet-like extractor: strided stem + stride-2 residual stages (224 → 7×7 by default)."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w, cfg.stem_kernel, stride=cfg.stem_stride,
                      padding=max(0, (cfg.stem_kernel - cfg.stem_stride + 1) // 2), bias=False),
            _norm(w, cfg.groups), nn.ReLU(inplace=True))
        blocks = []
        cin = w
        for mult in cfg.stage_multipliers:
            cout = w * int(mult)
            for b in range(cfg.blocks_per_stage):
                blocks.append(_BasicBlock(cin, cout, 2 if b == 0 else 1, cfg.groups))
                cin = cout
        self.stages = nn.Sequential(*blocks)

    def forward(self, x):
        return self.stages(self.stem(x))


def _conv_norm_relu(cin, cout, groups, kernel=3, stride=1, dims=2):
    conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    return nn.Sequential(conv, _norm(cout, groups), nn.ReLU(inplace=True))


class AffineNet(nn.Module):
    """Size- and aspect-ratio-independent affine registration network; ``forward(moving, fixed) -> theta``."""

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__()
        cfg = NetworkConfig() if config is None else config
        self.config = cfg
        self.extractor = _FeatureExtractor(cfg)
        fc = cfg.feature_channels
        layers, cin = [], 2 * fc
        for _ in range(max(1, cfg.combiner_layers)):
            layers.append(_conv_norm_relu(cin, cfg.combiner_channels, cfg.groups))
            cin = cfg.combiner_channels
        self.combiner = nn.Sequential(*layers)
        self.patch_combiner = _conv_norm_relu(cfg.combiner_channels, cfg.global_channels, cfg.groups, dims=3)
        # One shared strided 2-D conv, applied a number of times that grows with the patch grid. No
        # normalisation here: GroupNorm right before global pooling would normalise away the very
        # per-channel means the pooling passes on, leaving the head an input-independent constant;
        # leaky units, because dead ReLUs there had the same effect in training.
        self.global_conv = nn.Sequential(
            nn.Conv2d(cfg.global_channels, cfg.global_channels, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True))
        self.fc1 = nn.Linear(cfg.global_channels, cfg.head_hidden)
        self.fc2 = nn.Linear(cfg.head_hidden, 6)
        nn.init.zeros_(self.fc2.weight)
        with torch.no_grad():
            self.fc2.bias.copy_(torch.tensor(_IDENTITY_THETA))

    @staticmethod
    def num_global_convs(gy: int, gx: int) -> int:
        return max(1, math.ceil(math.log2(max(gy, gx, 1))))

    def _unfold(self, x: torch.Tensor):
        ps = self.config.patch_size
        n, c, h, w = x.shape
        gy, gx = -(-h // ps), -(-w // ps)
        x = F.pad(x, (0, gx * ps - w, 0, gy * ps - h))  # zeros, right and bottom only
        x = x.reshape(n, c, gy, ps, gx, ps).permute(0, 2, 4, 1, 3, 5).reshape(n * gy * gx, c, ps, ps)
        return x, gy, gx

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        if moving.shape != fixed.shape or moving.ndim != 4:
            raise ValueError(f"moving and fixed must be (N, C, H, W) of the same shape, got "
                             f"{tuple(moving.shape)} and {tuple(fixed.shape)}")
        n = moving.shape[0]
        m, gy, gx = self._unfold(moving)
        f, _, _ = self._unfold(fixed)
        feats = self.extractor(torch.cat([m, f], dim=0))           # (2·N·P, C, h, w), one pass for both
        fm, ff = feats.chunk(2, dim=0)
        x = self.combiner(torch.cat([fm, ff], dim=1))              # (N·P, Cc, h, w)
        _, c, h, w = x.shape
        p = gy * gx
        x = x.reshape(n, p, c, h, w).permute(0, 2, 1, 3, 4)        # (N, Cc, P, h, w): patch grid as depth
        x = self.patch_combiner(x.contiguous())                     # (N, Cg, P, h, w)
        c = x.shape[1]
        x = x.reshape(n, c, gy, gx, h, w).permute(0, 1, 2, 4, 3, 5).reshape(n, c, gy * h, gx * w)
        for _ in range(self.num_global_convs(gy, gx)):
            x = self.global_conv(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        x = F.leaky_relu(self.fc1(x), 0.1, inplace=True)
        return self.fc2(x).view(n, 2, 3)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def file_sha256(path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(path, model: AffineNet, extra: dict | None = None) -> Path:
    """Write ``model`` as a safetensors file (config and ``extra`` as JSON metadata), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": _FORMAT, "config": model.config.to_json(),
                "extra": json.dumps(extra if extra is not None else {}, sort_keys=True, default=str)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_model_metadata(path) -> dict:
    """The metadata of a saved model: ``{"config": dict, "extra": dict}``. Raises :class:`InputError`."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        return {"config": json.loads(meta["config"]), "extra": json.loads(meta.get("extra", "{}"))}
    except FileNotFoundError:
        raise InputError(f"model file not found: {path}") from None
    except Exception as exc:
        raise InputError(f"{path} is not a valid napari-histoaffine model file ({exc})") from None


def load_model(path, expected_sha256: str | None = None) -> AffineNet:
    """Rebuild an :class:`AffineNet` from a file written by :func:`save_model` (strict, no pickle)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual.lower() != expected_sha256.strip().lower():
            raise InputError(f"model file {path} has sha256 {actual}, expected {expected_sha256}: "
                             "the file is corrupt or not the expected model")
    meta = read_model_metadata(path)
    try:
        model = AffineNet(NetworkConfig.from_dict(meta["config"]))
        model.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:
        raise InputError(f"{path} is not a valid napari-histoaffine model file ({exc})") from None
    model.eval()
    return model
