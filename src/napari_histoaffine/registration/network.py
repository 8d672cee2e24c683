"""Patch-based affine registration network (method paper, section 2.3). Torch only.

The moving and fixed images (grayscale, inverted, background 0, same shape) are padded with zeros
(bottom/right) to the next multiple of ``patch_size`` and unfolded into non-overlapping patches
that form the batch dimension. A shared, lightweight ResNet-like extractor with GroupNorm (never
BatchNorm: the number of patches changes from pair to pair) turns every patch into a feature map
with one cell per 8 pixels. Moving and fixed features are concatenated per patch, together with
their local correlation (cosine similarity over a window of shifts), and merged by 2-D
convolutions (feature combiner); a 3-D convolution mixes neighbouring patches (the patch grid is
the depth axis) and the patch maps are tiled back into one 2-D map.

Two heads read that map and their thetas add up:

- the *displacement fit* (ours): per cell a soft-argmax over the correlation window, sharpened and
  corrected by learned logits, gives a displacement, a learned confidence weighs it, and the
  weighted least-squares affine of all cells is the theta. Geometry is solved, not learned, so a
  CPU can train the network in minutes rather than the days the paper's GPU budget allowed;
- the paper's head: a *shared* strided 2-D convolution applied ``max(1, ceil(log2(max(gy, gx))))``
  times (the receptive field grows with the image, the parameter count does not), adaptive average
  pooling to a small fixed grid and fully connected layers. Its last layer starts at zero, so it
  begins as a pure correction; with ``correlation_radius=0`` it is the only head, starts at the
  identity, and the network is the paper's.

The output is the ``affine_grid`` theta (``align_corners=False``) that warps the moving image onto
the fixed grid: ``grid_sample(moving, affine_grid(theta, fixed.shape)) ≈ fixed``.

Weights files are read and written by :mod:`napari_histoaffine.registration.weights`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NetworkConfig", "AffineNet", "count_parameters"]
_IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass
class NetworkConfig:
    """Every constructor argument of :class:`AffineNet` (JSON-serialisable)."""

    patch_size: int = 224
    in_channels: int = 1
    width: int = 16                      # channels after the stem; stage k has width * stage_multipliers[k]
    stage_multipliers: tuple = (2, 4)    # one residual stage each
    stage_strides: tuple = (2, 1)        # stem /4 then these: 224 -> 56 -> 28 -> 28 (features every 8 px)
    blocks_per_stage: int = 1
    stem_kernel: int = 4
    stem_stride: int = 4
    groups: int = 8                      # GroupNorm groups (reduced automatically to divide the channels)
    correlation_radius: int = 4          # local correlation of the two feature maps over ±radius cells, concatenated
                                         # with them for the combiner (0: plain concatenation)
    combiner_channels: int = 64
    combiner_layers: int = 2
    global_channels: int = 64
    head_hidden: int = 64
    pool_size: int = 4                   # adaptive average pooling to pool_size² cells: keeps *where* features are,
                                         # which rotation, scale and shear (displacement ∝ position) need
    input_long_side: int = 224           # long side (px) of the working images the network is trained on and fed
    passes: int = 2                      # at inference: each pass corrects the moving image warped by the last

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["stage_multipliers"] = list(self.stage_multipliers)
        d["stage_strides"] = list(self.stage_strides)
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
        for key in ("stage_multipliers", "stage_strides"):
            if key in data:
                data[key] = tuple(int(v) for v in data[key])
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
    """Shared ResNet-like extractor: strided stem + residual stages (224 → 28×28 by default)."""

    def __init__(self, cfg: NetworkConfig):
        super().__init__()
        w = cfg.width
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w, cfg.stem_kernel, stride=cfg.stem_stride,
                      padding=max(0, (cfg.stem_kernel - cfg.stem_stride + 1) // 2), bias=False),
            _norm(w, cfg.groups), nn.ReLU(inplace=True))
        blocks = []
        cin = w
        if len(cfg.stage_strides) != len(cfg.stage_multipliers):
            raise ValueError("stage_strides and stage_multipliers must have the same length")
        for mult, stride in zip(cfg.stage_multipliers, cfg.stage_strides):
            cout = w * int(mult)
            for b in range(cfg.blocks_per_stage):
                blocks.append(_BasicBlock(cin, cout, int(stride) if b == 0 else 1, cfg.groups))
                cin = cout
        self.stages = nn.Sequential(*blocks)

    def forward(self, x):
        return self.stages(self.stem(x))


class _PatchGridConv3d(nn.Conv3d):
    """3 × 3 × 3 convolution over ``(N, C, patches, h, w)`` (stride 1, zero padding 1, no bias).

    Computed as 2-D convolutions of each patch with the kernel's depth slices: the CPU's 3-D kernel
    is several times slower, and with a single patch only the middle slice has anything to see.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, depth, h, w = x.shape
        planes = x.transpose(1, 2).reshape(n * depth, c, h, w)
        middle = F.conv2d(planes, self.weight[:, :, 1], padding=1).view(n, depth, -1, h, w)
        if depth == 1:
            return middle.transpose(1, 2)
        before = F.conv2d(planes, self.weight[:, :, 0], padding=1).view(n, depth, -1, h, w)  # sees patch d - 1
        after = F.conv2d(planes, self.weight[:, :, 2], padding=1).view(n, depth, -1, h, w)   # sees patch d + 1
        out = middle + F.pad(before[:, :-1], (0, 0, 0, 0, 0, 0, 1, 0)) + F.pad(after[:, 1:], (0, 0, 0, 0, 0, 0, 0, 1))
        return out.transpose(1, 2)


def _conv_norm_relu(cin, cout, groups, kernel=3, stride=1, dims=2):
    if dims == 2:
        conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
    else:
        conv = _PatchGridConv3d(cin, cout, 3, padding=1, bias=False)
    return nn.Sequential(conv, _norm(cout, groups), nn.ReLU(inplace=True))


def _unit_channels(x: torch.Tensor) -> torch.Tensor:
    """``x`` divided by its norm over the channels (as ``F.normalize(x, dim=1)``, whose strided norm is
    several times slower on the CPU)."""
    return x * (x * x).sum(1, keepdim=True).clamp_min(1e-24).rsqrt()


def local_correlation(moving: torch.Tensor, fixed: torch.Tensor, radius: int) -> torch.Tensor:
    """Cosine similarity of each fixed feature vector with the moving ones up to ``radius`` cells away.

    Returns ``(N, (2r+1)², H, W)``: channel ``(dy + r)(2r+1) + (dx + r)`` compares fixed ``(y, x)``
    with moving ``(y + dy, x + dx)`` (zero outside the map). Matching evidence in this form is what
    a displacement needs, so the combiner does not have to learn it from concatenated features.
    """
    n, c, h, w = fixed.shape
    k, span = 2 * radius + 1, w + 2 * radius
    moving = F.pad(_unit_channels(moving), (radius,) * 4)                                  # (N, C, H+2r, W+2r)
    windows = moving.unfold(2, k, 1).permute(0, 2, 1, 4, 3).reshape(n, h, c, k * span)   # rows y .. y+2r, side by side
    fixed_rows = _unit_channels(fixed).permute(0, 2, 3, 1)                               # (N, H, W, C)
    products = (fixed_rows @ windows).contiguous()                    # every fixed cell · every moving cell of its rows
    s = products.stride()                                             # keep x + dx of row y + dy for cell x: a band
    bands = products.as_strided((n, h, w, k, k), (s[0], s[1], s[2] + 1, span, 1))
    return bands.reshape(n, h, w, k * k).permute(0, 3, 1, 2)


class AffineNet(nn.Module):
    """Size- and aspect-ratio-independent affine registration network; ``forward(moving, fixed) -> theta``."""

    def __init__(self, config: NetworkConfig | None = None):
        super().__init__()
        cfg = NetworkConfig() if config is None else config
        self.config = cfg
        self.extractor = _FeatureExtractor(cfg)
        fc = cfg.feature_channels
        layers, cin = [], 2 * fc + (2 * cfg.correlation_radius + 1) ** 2 * (cfg.correlation_radius > 0)
        for i in range(max(1, cfg.combiner_layers)):  # the first one 1×1: the correlation already looked around
            layers.append(_conv_norm_relu(cin, cfg.combiner_channels, cfg.groups, kernel=1 if i == 0 else 3))
            cin = cfg.combiner_channels
        self.combiner = nn.Sequential(*layers)
        self.patch_combiner = _conv_norm_relu(cfg.combiner_channels, cfg.global_channels, cfg.groups, dims=3)
        # One shared strided 2-D conv, applied a number of times that grows with the patch grid. No
        # normalisation here: GroupNorm right before global pooling would normalise away the very
        # per-channel means the pooling passes on, leaving the head an input-independent constant;
        # leaky units, because dead ReLUs there had the same effect in training.
        self.global_conv = nn.Sequential(
            nn.Conv2d(cfg.global_channels, cfg.global_channels, 3, stride=2, padding=1),
            nn.LeakyReLU(0.1, inplace=True))
        self.fc1 = nn.Linear(cfg.global_channels * cfg.pool_size ** 2, cfg.head_hidden)
        self.fc2 = nn.Linear(cfg.head_hidden, 6)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        if cfg.correlation_radius > 0:
            shifts = (2 * cfg.correlation_radius + 1) ** 2
            self.match_scale = nn.Parameter(torch.tensor(10.0))
            self.match_refine = nn.Conv2d(cfg.global_channels, shifts, 3, padding=1)
            self.confidence = nn.Conv2d(cfg.global_channels, 1, 3, padding=1)
            for layer in (self.match_refine, self.confidence):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

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
        combined = [fm, ff]
        radius = self.config.correlation_radius
        if radius > 0:
            correlation = local_correlation(fm, ff, radius)
            combined.append(correlation)
        x = self.combiner(torch.cat(combined, dim=1))              # (N·P, Cc, h, w)
        _, c, h, w = x.shape
        x = self._tile(self.patch_combiner(self._patch_depth(x, n, gy, gx)), gy, gx)   # (N, Cg, gy·h, gx·w)
        if radius > 0:
            correlation = self._tile(self._patch_depth(correlation, n, gy, gx), gy, gx)
            theta = self._fit_displacements(x, correlation, moving.shape[-2:], self.config.patch_size / h)
        else:
            theta = torch.tensor(_IDENTITY_THETA, dtype=x.dtype, device=x.device).view(1, 2, 3)
        for _ in range(self.num_global_convs(gy, gx)):
            x = self.global_conv(x)
        x = F.adaptive_avg_pool2d(x, self.config.pool_size).flatten(1)
        x = F.leaky_relu(self.fc1(x), 0.1, inplace=True)
        return theta + self.fc2(x).view(n, 2, 3)

    @staticmethod
    def _patch_depth(x: torch.Tensor, n: int, gy: int, gx: int) -> torch.Tensor:
        """(N·P, C, h, w) → (N, C, P, h, w): the patch grid as the depth of a 3-D convolution."""
        _, c, h, w = x.shape
        return x.reshape(n, gy * gx, c, h, w).permute(0, 2, 1, 3, 4).contiguous()

    @staticmethod
    def _tile(x: torch.Tensor, gy: int, gx: int) -> torch.Tensor:
        """(N, C, P, h, w) → (N, C, gy·h, gx·w): the patch maps laid out as the image."""
        n, c, _, h, w = x.shape
        return x.reshape(n, c, gy, gx, h, w).permute(0, 1, 2, 4, 3, 5).reshape(n, c, gy * h, gx * w)

    def _fit_displacements(self, x: torch.Tensor, correlation: torch.Tensor, shape, stride: float) -> torch.Tensor:
        """Theta of the weighted least-squares affine fit to one displacement per feature cell.

        Each fixed cell's displacement is the soft-argmax over the correlation window (sharpened and
        corrected by learned logits); a learned confidence weights the cells, and cells whose centre
        lies in the zero padding get none. Cell centres are in the normalised coordinates of theta.
        """
        radius = self.config.correlation_radius
        n, _, hm, wm = x.shape
        height, width = shape
        # both 3 × 3 heads in one convolution: the same sums, and a 1-channel convolution alone is slow on the CPU
        heads = F.conv2d(x, torch.cat([self.match_refine.weight, self.confidence.weight]),
                         torch.cat([self.match_refine.bias, self.confidence.bias]), padding=1)
        logits = self.match_scale * correlation + heads[:, :-1]
        probability = torch.softmax(logits.flatten(2).transpose(1, 2).reshape(n, hm * wm, -1), dim=-1)
        offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) * stride
        dy, dx = torch.meshgrid(offsets, offsets, indexing="ij")
        shift = probability @ torch.stack([dx.flatten(), dy.flatten()], dim=1)          # (N, M, 2) pixels
        cy, cx = torch.meshgrid((torch.arange(hm, dtype=x.dtype, device=x.device) + 0.5) * stride - 0.5,
                                (torch.arange(wm, dtype=x.dtype, device=x.device) + 0.5) * stride - 0.5, indexing="ij")
        centres = torch.stack([cx.flatten(), cy.flatten()], dim=1)                      # (M, 2) fixed pixels
        size = torch.tensor([width, height], dtype=x.dtype, device=x.device)
        fixed_points = (2 * centres + 1) / size - 1
        moving_points = (2 * (centres + shift) + 1) / size - 1
        inside = ((centres[:, 0] < width) & (centres[:, 1] < height)).to(x.dtype)
        weight = torch.sigmoid(heads[:, -1:]).flatten(1) * inside                       # (N, M)
        design = torch.cat([fixed_points, torch.ones_like(fixed_points[:, :1])], dim=1)  # (M, 3)
        weighted = design.unsqueeze(0) * weight.unsqueeze(-1)                            # (N, M, 3)
        ridge = 1e-3 * weight.sum(1).view(n, 1, 1) + 1e-6
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        normal = weighted.transpose(1, 2) @ design + ridge * eye                        # (N, 3, 3)
        rhs = weighted.transpose(1, 2) @ moving_points + ridge * eye[:, :2]            # (N, 3, 2), ridge → identity
        return torch.linalg.solve(normal, rhs).transpose(1, 2)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
