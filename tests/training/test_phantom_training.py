"""Training on phantom specimens (issue 25): exact targets from their landmarks, specimens held out for validation,
only development families, and the same path from ``histoaffine train --phantoms``."""
import numpy as np
import pytest

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.phantoms.families import FAMILY_PARTS
from napari_histoaffine.progress import run_steps
from napari_histoaffine.registration.weights import read_model_metadata
from napari_histoaffine.training.data import VALIDATE_EVERY, data_sources, pose_training_pair, training_data_steps

SIZE = 128


def _working_error(pair, matrix) -> float:
    """Median landmark distance (fixed working pixels) of ``matrix`` on a posed pair."""
    fixed = transforms.apply_to_points(transforms.invert(pair.fixed_to_original), pair.fixed_landmarks)
    return float(np.median(np.hypot(*(transforms.apply_to_points(matrix, pair.moving_landmarks) - fixed).T)))


def test_phantom_pairs_train_on_exact_targets_and_hold_out_every_tenth_specimen(monkeypatch):
    drawn = []
    import napari_histoaffine.phantoms.specimen as specimen

    real = specimen.make_specimen
    monkeypatch.setattr(specimen, "make_specimen", lambda seed, families, **kw: drawn.append(families) or
                        real(seed, families, long_side=320))
    data = run_steps(training_data_steps(data_sources({"phantoms": VALIDATE_EVERY, "phantom_seed": 5}), SIZE), None)
    assert all(families == FAMILY_PARTS["dev"] for families in drawn)  # the final part's families stay unseen
    assert data.train and data.validation
    assert all("-009_" in p.name for p in data.validation) and not any("-009_" in p.name for p in data.train)
    for pair in data.train:
        assert pair.pose is pair.target  # the residual augmentation stands in for the search's error
        assert _working_error(pair, pair.target) < 1.0  # sections differ by a small elastic warp only
    held = data.validation[0]
    assert held.target is None and held.moving_landmarks is not None  # validates as the network alone meets it


def test_landmark_targets_need_landmarks():
    from napari_histoaffine.errors import InputError
    from napari_histoaffine.sample import make_pair

    pair = make_pair()
    taught = pose_training_pair(pair.moving, pair.fixed, pair.moving_landmarks, pair.fixed_landmarks, SIZE,
                                teacher="landmarks")
    assert _working_error(taught, taught.target) < 0.5
    with pytest.raises(InputError, match="landmark targets need landmarks"):
        pose_training_pair(pair.moving, pair.fixed, None, None, SIZE, teacher="landmarks")


def test_cli_trains_on_phantoms_and_records_them(tmp_path):
    assert main(["train", "--phantoms", "2", "--phantom-seed", "7", "--steps", "1", "--accumulation", "1",
                 "--working-size", "96", "--width", "8", "--patch-size", "96", "--validate-every", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    data = read_model_metadata(tmp_path / "last.safetensors")["extra"]["training"]["data"]
    assert (data["phantoms"], data["phantom_seed"]) == (2, 7)
