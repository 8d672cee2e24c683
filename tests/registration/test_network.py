"""Tests of the affine registration network (napari_histoaffine.registration.network)."""
import json

import pytest
import torch

from napari_histoaffine.errors import InputError
from napari_histoaffine.registration.network import (
    AffineNet,
    NetworkConfig,
    _PatchGridConv3d,
    count_parameters,
    local_correlation,
)
from napari_histoaffine.registration.weights import file_sha256, load_model, read_model_metadata, save_model

IDENTITY = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])


def _pair(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)


def _randomize_head(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.fc2.weight.copy_(0.1 * torch.randn(model.fc2.weight.shape, generator=g))


def test_plain_head_is_the_identity_at_init():
    """Without the correlation fit (the paper's concatenation head) an untrained network changes nothing."""
    torch.manual_seed(0)
    model = AffineNet(NetworkConfig(correlation_radius=0))
    moving, fixed = _pair(300, 500)
    theta = model(moving, fixed)
    assert theta.shape == (1, 2, 3)
    assert torch.equal(theta.detach(), IDENTITY)


def test_default_model_is_small():
    n = count_parameters(AffineNet())
    assert 100_000 <= n <= 5_000_000  # ≤ 20 MB as float32


def test_local_correlation_compares_shifted_cells():
    g = torch.Generator().manual_seed(0)
    fixed = torch.randn(1, 8, 6, 7, generator=g)
    moving = torch.randn(1, 8, 6, 7, generator=g)
    corr = local_correlation(moving, fixed, 1)
    unit_m, unit_f = torch.nn.functional.normalize(moving, dim=1), torch.nn.functional.normalize(fixed, dim=1)
    dy, dx, y, x = 1, -1, 2, 3  # channel (dy + 1) * 3 + (dx + 1) compares fixed (y, x) with moving (y + dy, x + dx)
    assert torch.isclose(corr[0, (dy + 1) * 3 + dx + 1, y, x], (unit_m[0, :, y + dy, x + dx] * unit_f[0, :, y, x]).sum())
    assert corr[0, :, 0, 0].view(3, 3)[0].abs().sum() == 0  # above the map: zero


@pytest.mark.parametrize("patches", [1, 2, 3])
def test_patch_grid_convolution_equals_conv3d(patches):
    conv = _PatchGridConv3d(6, 5, 3, padding=1, bias=False)
    x = torch.randn(2, 6, patches, 9, 11)
    with torch.no_grad():
        assert torch.allclose(conv(x), torch.nn.functional.conv3d(x, conv.weight, padding=1), atol=1e-5)


def test_correlation_fit_reads_a_known_shift():
    """Moving features shifted by one cell (8 px): the least-squares fit is that translation."""
    model = AffineNet()
    with torch.no_grad():
        model.match_scale.fill_(100.0)
    big = torch.randn(1, 64, 62, 62, generator=torch.Generator().manual_seed(3))
    fixed = big[..., 1:61, 1:61]
    moving = big[..., 2:62, 0:60]  # moving cell (y - 1, x + 1) holds fixed cell (y, x)
    correlation = local_correlation(moving, fixed, model.config.correlation_radius)
    with torch.no_grad():
        theta = model._fit_displacements(torch.zeros(1, model.config.global_channels, 60, 60), correlation, (480, 480), 8.0)
    expected = torch.tensor([[1.0, 0.0, 2 * 8 / 480], [0.0, 1.0, -2 * 8 / 480]])  # normalised units: side = 2
    assert torch.allclose(theta[0], expected, atol=0.006)  # the unmatched edge row and column pull a little


@pytest.mark.parametrize("hw", [(300, 700), (448, 448), (700, 250), (225, 223), (100, 90)])
def test_any_size_and_parameter_count_independent_of_size(hw):
    model = AffineNet()
    n_before = count_parameters(model)
    _randomize_head(model)
    with torch.inference_mode():
        theta = model(*_pair(*hw))
    assert theta.shape == (1, 2, 3)
    assert torch.isfinite(theta).all()
    assert count_parameters(model) == n_before  # nothing created in forward


def test_parameter_count_same_for_three_aspect_ratios():
    model = AffineNet()
    counts = []
    for hw in [(300, 700), (448, 448), (700, 250)]:
        with torch.inference_mode():
            model(*_pair(*hw))
        counts.append(count_parameters(model))
        counts.append(sum(1 for _ in model.parameters()))
    assert len(set(counts[0::2])) == 1 and len(set(counts[1::2])) == 1


def test_no_batchnorm():
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in AffineNet().modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in AffineNet().modules())


def test_padding_only_to_next_multiple():
    model = AffineNet()
    x, gy, gx = model._unfold(torch.ones(1, 1, 300, 700))
    assert (gy, gx) == (2, 4) and x.shape == (8, 1, 224, 224)
    x, gy, gx = model._unfold(torch.ones(1, 1, 224, 448))
    assert (gy, gx) == (1, 2)
    # patches are taken in row-major order, padding zeros at the bottom/right only
    img = torch.arange(300 * 700, dtype=torch.float32).reshape(1, 1, 300, 700)
    x, _, _ = model._unfold(img)
    assert torch.equal(x[1, 0], img[0, 0, :224, 224:448])
    assert torch.equal(x[4, 0, :76, :], img[0, 0, 224:300, :224])
    assert (x[4, 0, 76:] == 0).all()


def test_mismatched_shapes_rejected():
    with pytest.raises(ValueError):
        AffineNet()(torch.zeros(1, 1, 224, 224), torch.zeros(1, 1, 224, 230))


def test_batch_of_pairs_matches_single():
    model = AffineNet().eval()
    _randomize_head(model)
    a1, b1 = _pair(250, 300, seed=1)
    a2, b2 = _pair(250, 300, seed=2)
    with torch.inference_mode():
        both = model(torch.cat([a1, a2]), torch.cat([b1, b2]))
        t1, t2 = model(a1, b1), model(a2, b2)
    assert torch.allclose(both, torch.cat([t1, t2]), atol=1e-5)


def test_config_json_round_trip():
    cfg = NetworkConfig(width=16, stage_multipliers=(1, 2, 4), groups=4)
    again = NetworkConfig.from_json(json.dumps(json.loads(cfg.to_json())))
    assert again == cfg


def test_save_load_round_trip(tmp_path):
    cfg = NetworkConfig(width=16, groups=4, combiner_channels=64, global_channels=64, head_hidden=32)
    model = AffineNet(cfg).eval()
    _randomize_head(model)
    path = tmp_path / "sub" / "model.safetensors"
    save_model(path, model, extra={"epochs": 3, "note": "test"})
    assert path.is_file() and list(path.parent.iterdir()) == [path]  # no temp file left
    loaded = load_model(path)
    assert loaded.config == cfg
    assert read_model_metadata(path)["extra"] == {"epochs": 3, "note": "test"}
    moving, fixed = _pair(300, 400)
    with torch.inference_mode():
        assert torch.equal(model(moving, fixed), loaded(moving, fixed))
    # matching checksum is accepted (any case)
    load_model(path, expected_sha256=file_sha256(path).upper())


def test_sha256_mismatch_raises(tmp_path):
    path = tmp_path / "model.safetensors"
    save_model(path, AffineNet(NetworkConfig(width=8, groups=4)))
    with pytest.raises(InputError, match="model.safetensors"):
        load_model(path, expected_sha256="0" * 64)


def test_corrupt_or_missing_file_raises(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(InputError, match="bad.safetensors"):
        load_model(bad)
    with pytest.raises(InputError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")
    # truncated real file
    good = tmp_path / "good.safetensors"
    save_model(good, AffineNet(NetworkConfig(width=8, groups=4)))
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(InputError, match="trunc.safetensors"):
        load_model(trunc)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = AffineNet(NetworkConfig(width=16, groups=4, combiner_channels=64, global_channels=64, head_hidden=32))
    moving, fixed = _pair(300, 500)
    target = torch.tensor([[[0.9, 0.1, 0.05], [-0.1, 1.1, -0.05]]])

    def step():
        opt.zero_grad()
        loss = ((model(moving, fixed) - target) ** 2).sum()
        loss.backward()
        return loss

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step()
    opt.step()  # the zero-initialised FC output layer passes gradients on from the second step
    step()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, f"no gradient for {name}"


def test_output_depends_on_the_input_once_the_head_has_weights():
    """Regression: normalisation right before global pooling made the head see a constant."""
    torch.manual_seed(0)
    model = AffineNet()
    torch.nn.init.normal_(model.fc2.weight, std=0.1)
    moving = torch.rand(1, 1, 224, 224)
    shifted = torch.roll(moving, shifts=(9, -7), dims=(2, 3))
    with torch.no_grad():
        same = model(moving, moving)
        different = model(shifted, moving)
    assert (same - different).abs().max() > 1e-3
