"""The network weights that ship with the package (models/default.safetensors + default.json)."""
import json

import numpy as np
import pytest

from napari_histoaffine.errors import InputError
from napari_histoaffine.evaluation import metrics
from napari_histoaffine.registration.network import AffineNet, NetworkConfig
from napari_histoaffine.registration.options import RegistrationOptions
from napari_histoaffine.registration.pipeline import register
from napari_histoaffine.registration.weights import (
    default_weights_path,
    file_sha256,
    load_default_model,
    load_model,
    read_model_metadata,
)
from napari_histoaffine.sample import make_pair
from napari_histoaffine.transforms import apply_to_points


@pytest.fixture(scope="module")
def card():
    path = default_weights_path()
    assert path is not None, "the package must ship models/default.safetensors"
    return path, json.loads(path.with_suffix(".json").read_text())


def test_shipped_weights_match_their_card(card):
    path, info = card
    assert file_sha256(path) == info["sha256"]
    assert path.stat().st_size <= 20 * 2**20
    meta = read_model_metadata(path)
    assert meta["config"] == info["network"]
    model = load_default_model()
    assert isinstance(model, AffineNet) and model.config == NetworkConfig.from_dict(info["network"])
    assert sum(p.numel() for p in model.parameters()) == info["parameters"]
    assert info["command"].startswith("histoaffine train")
    data = info["training"]["data"]  # phantoms (and ihc.png) only: every real section we test on is unseen
    assert data["phantoms"] > 0 and not data["pairs"] and not data["folders"]


def test_a_changed_file_is_refused(card, tmp_path):
    path, info = card
    copy = tmp_path / "default.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256"):
        load_model(copy, expected_sha256=info["sha256"])


def _median_rtre(result, pair) -> float:
    moved = apply_to_points(result.matrix, pair.moving_landmarks)
    return float(np.median(metrics.tre(moved, pair.fixed_landmarks))) / metrics.image_diagonal(pair.fixed.shape)


def test_shipped_network_registers_the_sample_better_than_the_rotation_search():
    pair = make_pair()
    rotation_only = register(pair.moving, pair.fixed, RegistrationOptions(model=None, refine=False))
    with_network = register(pair.moving, pair.fixed, RegistrationOptions(refine=False))  # model="default"
    assert with_network.stages == ["preprocess", "pose search", "network"]
    assert _median_rtre(with_network, pair) < 0.5 * _median_rtre(rotation_only, pair)
    assert with_network.ncc_after > rotation_only.ncc_after
