"""Tests of the training loop (napari_histoaffine.training): learning, stop, resume, repeatability, CLI."""
import argparse

import numpy as np
import pytest
import torch

from napari_histoaffine import transforms
from napari_histoaffine.errors import InputError
from napari_histoaffine.registration.network import AffineNet, NetworkConfig
from napari_histoaffine.registration.weights import load_model, read_model_metadata
from napari_histoaffine.training import (
    TrainingConfig,
    TrainingPair,
    add_train_arguments,
    array_pair,
    ihc_pairs,
    make_sample,
    run_train,
    stain_jitter,
    train,
)

SIZE = 128
TINY = {"width": 8, "combiner_channels": 16, "global_channels": 16, "head_hidden": 16}


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def _tiny_config(**kw):
    base = dict(steps=6, accumulation=2, working_size=SIZE, network=TINY, validate_every=3, validation_samples=3,
                lr=1e-3, seed=3)
    base.update(kw)
    return TrainingConfig(**base)


def _shifted_pair(shift=(7.0, -5.0)):
    """ihc at working size, the moving copy posed by a wrong shift; landmarks know the truth (identity)."""
    image = ihc_pairs(crops=False)[0].fixed
    image = image[::4, ::4].copy()                           # 128 × 128 working pixels
    points = np.array([[20.0, 30.0], [100.0, 40.0], [64.0, 64.0], [30.0, 110.0], [90.0, 100.0]])
    return TrainingPair("shifted", image, image.copy(), transforms.translation(*shift), factor=1.0,
                        moving_landmarks=points, fixed_landmarks=points, fixed_to_original=transforms.identity(),
                        fixed_diagonal=float(np.hypot(*image.shape[:2])))


def test_sample_truth_follows_the_convention():
    """The stored truth maps moving-sample pixels onto the same structure in the fixed sample."""
    cfg = _tiny_config(stain_jitter=0.0, brightness=0.0, contrast=0.0)
    pair = ihc_pairs(crops=False)[0]
    sample = make_sample(pair, cfg, np.random.default_rng(1))
    theta = torch.from_numpy(transforms.to_theta(sample.truth, (SIZE, SIZE), (SIZE, SIZE))).float()[None]
    aligned = transforms.warp_tensor(sample.moving, theta, (SIZE, SIZE))
    valid = (transforms.warp_tensor(sample.moving_valid, theta, (SIZE, SIZE)) * sample.fixed_valid) > 0.99
    before = (sample.moving - sample.fixed).abs()[valid].mean()
    after = (aligned - sample.fixed).abs()[valid].mean()
    assert after < 0.35 * before


def test_stain_jitter_changes_colours_not_geometry():
    image = ihc_pairs(crops=False)[0].fixed[:64, :64]
    out = stain_jitter(image, np.random.default_rng(0), 0.5)
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and not np.allclose(out, image)


def test_training_learns_the_pose_correction(tmp_path):
    """Fixed seed, all augmentation off: one misposed pair; validation NCC and landmark rTRE must improve."""
    pair = _shifted_pair()
    cfg = _tiny_config(steps=12, accumulation=1, lr=1e-2, validate_every=12, out_dir=str(tmp_path), stain_jitter=0.0,
                       brightness=0.0, contrast=0.0, rotation_deg=0.0, scale_range=(1.0, 1.0), shear=0.0,
                       translation=0.0, residual_rotation_deg=0.0, residual_scale_range=(1.0, 1.0),
                       residual_shear=0.0, residual_translation=0.0)
    updates = []
    outcome = train(cfg, [pair], validation=[pair], on_update=updates.append)
    assert outcome.steps == 12 and not outcome.stopped
    assert outcome.final_validation["val_ncc"] > outcome.initial_validation["val_ncc"] + 0.05
    assert outcome.final_validation["val_rtre"] < 0.6 * outcome.initial_validation["val_rtre"]
    assert updates[-1].state == "finished" and updates[-1].step == 12
    assert {u.state for u in updates} >= {"validating", "training", "finished"}
    for name in ("model.safetensors", "last.safetensors", "log.csv", "loss.png", "last.optim.pt"):
        assert (tmp_path / name).is_file(), name
    best = read_model_metadata(tmp_path / "model.safetensors")["extra"]
    assert best["step"] == outcome.best_step == 12
    assert best["training"]["steps"] == 12
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert lines[0].startswith("step,loss,val_ncc") and len(lines) == 1 + 13


def test_same_seed_same_losses():
    cfg = _tiny_config(steps=2, validate_every=100)
    a = train(cfg, ihc_pairs())
    b = train(cfg, ihc_pairs())
    losses_a = [r["loss"] for r in a.history[1:]]
    assert losses_a == [r["loss"] for r in b.history[1:]]
    assert len(losses_a) == 2 and all(np.isfinite(losses_a))
    c = train(_tiny_config(steps=2, validate_every=100, seed=4), ihc_pairs())
    assert [r["loss"] for r in c.history[1:]] != losses_a


def test_stop_is_prompt_and_leaves_a_checkpoint(tmp_path):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 5            # stops before the 6th pair: in the middle of step 3 (2 pairs per step)

    updates = []
    outcome = train(_tiny_config(steps=50, out_dir=str(tmp_path), validate_every=100), ihc_pairs(),
                    on_update=updates.append, should_stop=should_stop)
    assert outcome.stopped and outcome.steps == 2
    assert calls["n"] == 6
    assert updates[-1].state == "stopped"
    model = load_model(tmp_path / "last.safetensors")
    assert isinstance(model, AffineNet)
    assert read_model_metadata(tmp_path / "last.safetensors")["extra"]["step"] == 2


def test_resume_continues_from_the_saved_step(tmp_path):
    cfg = _tiny_config(steps=4, out_dir=str(tmp_path), validate_every=2)
    full = train(cfg, ihc_pairs(), should_stop=None)
    reference = [r["loss"] for r in full.history if r["loss"] is not None]

    out2 = tmp_path / "run2"
    cfg2 = _tiny_config(steps=4, out_dir=str(out2), validate_every=2)
    calls = {"n": 0}

    def stop_after_two_steps():
        calls["n"] += 1
        return calls["n"] > 4

    first = train(cfg2, ihc_pairs(), should_stop=stop_after_two_steps)
    assert first.stopped and first.steps == 2
    resumed = train(cfg2, ihc_pairs(), resume=out2 / "last.safetensors")
    assert resumed.steps == 4 and not resumed.stopped
    steps = [r["step"] for r in resumed.history]
    assert steps == [0, 1, 2, 3, 4]
    losses = [r["loss"] for r in resumed.history if r["loss"] is not None]
    np.testing.assert_allclose(losses, reference, rtol=1e-4, atol=1e-5)   # same samples, same optimizer state


def test_fine_tune_a_given_model_and_cli(tmp_path, capsys):
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--ihc", "--no-crops", "--steps", "2", "--accumulation", "1", "--working-size", "96",
                              "--width", "8", "--validate-every", "1", "--out", str(tmp_path), "--quiet"])
    assert run_train(args) == 0
    meta = read_model_metadata(tmp_path / "model.safetensors")
    assert meta["config"]["width"] == 8 and meta["extra"]["training"]["data"]["ihc"] is True
    # continue from the stored step with more steps
    args = parser.parse_args(["--resume", str(tmp_path / "last.safetensors"), "--steps", "3", "--quiet"])
    assert run_train(args) == 0
    assert read_model_metadata(tmp_path / "last.safetensors")["extra"]["step"] == 3
    # fine-tune an existing model object
    torch.manual_seed(0)
    model = AffineNet(NetworkConfig(**TINY, input_long_side=SIZE))
    outcome = train(_tiny_config(steps=1, validate_every=100), ihc_pairs(crops=False), model=model)
    assert outcome.model is model
    with pytest.raises(InputError, match="works at"):
        train(_tiny_config(steps=1, working_size=2 * SIZE), ihc_pairs(crops=False), model=model)
    assert run_train(parser.parse_args(["--steps", "1", "--out", str(tmp_path / "x"), "--quiet"])) == 2


def test_real_pairs_learn_from_the_refinement_and_validate_from_the_pose():
    """A training pair's target is the refinement's result (landmark-free), close to the truth; a
    validation pair keeps the search's first pose and no target, as the network alone meets it."""
    from napari_histoaffine.sample import make_pair

    pair = make_pair()
    teach = array_pair(pair.moving, pair.fixed, pair.moving_landmarks, pair.fixed_landmarks, SIZE)
    moved = transforms.apply_to_points(transforms.compose(teach.target, teach.fixed_to_original), teach.moving_landmarks)
    error = np.median(np.linalg.norm(moved - pair.fixed_landmarks, axis=1)) / teach.fixed_diagonal
    assert error < 0.01
    sample = make_sample(teach, _tiny_config(), np.random.default_rng(0))
    assert sample.truth is not None
    held = array_pair(pair.moving, pair.fixed, pair.moving_landmarks, pair.fixed_landmarks, SIZE, teacher=False)
    assert held.target is None and make_sample(held, _tiny_config(), None).truth is None
