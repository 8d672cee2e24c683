"""Tests of the training loop (napari_histoaffine.training): learning, stop, resume, repeatability, CLI."""
import json

import numpy as np
import pytest
import torch

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.errors import InputError
from napari_histoaffine.progress import STOP, run_steps
from napari_histoaffine.registration.network import AffineNet, NetworkConfig
from napari_histoaffine.registration.weights import load_model, read_model_metadata
from napari_histoaffine.training.config import TrainingConfig
from napari_histoaffine.training.data import (
    DataSource,
    SectionArrays,
    TrainingPair,
    ihc_pairs,
    pose_training_pair,
    pose_validation_pair,
    training_data_steps,
)
from napari_histoaffine.training.loop import train, train_steps
from napari_histoaffine.training.samples import make_sample, stain_jitter

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


def _run_until_stopped(steps, stop_before_pair: int):
    """Drive a training generator, answering STOP to the update before its ``stop_before_pair``-th pair;
    returns the outcome, the updates and how many pairs were announced."""
    updates, pairs, answer = [], 0, None
    while True:
        try:
            update = steps.send(answer)
        except StopIteration as done:
            return done.value, updates, pairs
        updates.append(update)
        pairs += update.pair is not None
        answer = STOP if update.pair is not None and pairs == stop_before_pair else None


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
    assert updates[-1].stage == "finished" and updates[-1].step == 12
    assert {u.stage for u in updates} >= {"validating", "training", "finished"}
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
    # stops before the 6th pair: in the middle of step 3 (2 pairs per step)
    steps = train_steps(_tiny_config(steps=50, out_dir=str(tmp_path), validate_every=100), ihc_pairs())
    outcome, updates, pairs = _run_until_stopped(steps, stop_before_pair=6)
    assert outcome.stopped and outcome.steps == 2
    assert pairs == 6
    assert updates[-1].stage == "stopped"
    model = load_model(tmp_path / "last.safetensors")
    assert isinstance(model, AffineNet)
    assert read_model_metadata(tmp_path / "last.safetensors")["extra"]["step"] == 2


def test_closing_the_generator_saves_the_last_checkpoint(tmp_path):
    steps = train_steps(_tiny_config(steps=50, out_dir=str(tmp_path), validate_every=100), ihc_pairs())
    while next(steps).step < 2:
        pass
    steps.close()
    assert read_model_metadata(tmp_path / "last.safetensors")["extra"]["step"] == 2
    assert len((tmp_path / "log.csv").read_text().splitlines()) == 1 + 3


def _two_pair_table(tmp_path):
    """The sample pair as a pairs table of two cases, a (a-He.png) and b (b-CD31.png), onto fixed.png, with landmarks."""
    from napari_histoaffine.files.images import write_image
    from napari_histoaffine.files.tables import write_landmarks
    from napari_histoaffine.sample import make_pair

    pair = make_pair()
    for name, image, points in (("a-He.png", pair.moving, pair.moving_landmarks),
                                ("b-CD31.png", pair.moving, pair.moving_landmarks),
                                ("fixed.png", pair.fixed, pair.fixed_landmarks)):
        write_image(tmp_path / name, image)
        write_landmarks(tmp_path / name.replace(".png", ".csv"), points)
    table = tmp_path / "pairs.csv"
    table.write_text("Source image,Target image,Source landmarks,Target landmarks,Case\n"
                     "a-He.png,fixed.png,a-He.csv,fixed.csv,a\nb-CD31.png,fixed.png,b-CD31.csv,fixed.csv,b\n")
    return pair, table


def test_one_rule_for_which_pairs_validate(tmp_path):
    """Held-out table pairs validate only, posed as at inference; other table pairs train only; a pair of
    sections in memory trains and validates. A table's pairs are posed once until a file changes."""
    from napari_histoaffine.files.images import write_image

    pair, table = _two_pair_table(tmp_path)
    sections = SectionArrays("layers", pair.moving, pair.fixed, None, pair.moving_landmarks, pair.fixed_landmarks)
    sources = [DataSource("table", str(table), holdout=("cd31",)), DataSource("layers", sections=sections)]
    data = run_steps(training_data_steps(sources, SIZE))
    assert [p.name for p in data.train] == ["a", "layers"] and [p.name for p in data.validation] == ["b", "layers"]
    assert data.train[0].target is not None and data.validation[0].target is None
    assert data.train[1] is data.validation[1] and data.validation[1].moving_landmarks is not None
    again = run_steps(training_data_steps(sources[:1], SIZE))
    assert again.train[0] is data.train[0] and again.validation[0] is data.validation[0]
    write_image(tmp_path / "a-He.png", pair.moving[:-8])  # rewritten: posed again
    assert run_steps(training_data_steps(sources[:1], SIZE)).train[0] is not data.train[0]
    table_only = run_steps(training_data_steps([DataSource("table", str(table))], SIZE))
    assert len(table_only.train) == 2 and not table_only.validation


def test_resume_continues_from_the_saved_step(tmp_path):
    cfg = _tiny_config(steps=4, out_dir=str(tmp_path), validate_every=2)
    full = train(cfg, ihc_pairs())
    reference = [r["loss"] for r in full.history if r["loss"] is not None]

    out2 = tmp_path / "run2"
    cfg2 = _tiny_config(steps=4, out_dir=str(out2), validate_every=2)
    first, _, _ = _run_until_stopped(train_steps(cfg2, ihc_pairs()), stop_before_pair=5)  # after two steps
    assert first.stopped and first.steps == 2
    resumed = train(cfg2, ihc_pairs(), resume=out2 / "last.safetensors")
    assert resumed.steps == 4 and not resumed.stopped
    steps = [r["step"] for r in resumed.history]
    assert steps == [0, 1, 2, 3, 4]
    losses = [r["loss"] for r in resumed.history if r["loss"] is not None]
    np.testing.assert_allclose(losses, reference, rtol=1e-4, atol=1e-5)   # same samples, same optimizer state


def test_fine_tune_a_given_model_and_cli(tmp_path, capsys):
    assert main(["train", "--ihc", "--no-crops", "--steps", "2", "--accumulation", "1", "--working-size", "96",
                 "--width", "8", "--patch-size", "96", "--validate-every", "1", "--out", str(tmp_path), "--quiet"]) == 0
    meta = read_model_metadata(tmp_path / "model.safetensors")
    assert meta["config"]["width"] == 8 and meta["config"]["patch_size"] == 96
    assert meta["extra"]["training"]["data"]["ihc"] is True
    # a network to start from trains at the size it works at, unless told otherwise
    assert main(["train", "--init", str(tmp_path / "last.safetensors"), "--ihc", "--no-crops", "--steps", "1",
                 "--accumulation", "1", "--validate-every", "1", "--out", str(tmp_path / "tuned"), "--quiet"]) == 0
    tuned = read_model_metadata(tmp_path / "tuned" / "last.safetensors")
    assert tuned["config"] == meta["config"] and tuned["extra"]["training"]["working_size"] == 96
    # continue from the stored step with more steps
    assert main(["train", "--resume", str(tmp_path / "last.safetensors"), "--steps", "3", "--quiet"]) == 0
    assert read_model_metadata(tmp_path / "last.safetensors")["extra"]["step"] == 3
    # fine-tune an existing model object
    torch.manual_seed(0)
    model = AffineNet(NetworkConfig(**TINY, input_long_side=SIZE))
    outcome = train(_tiny_config(steps=1, validate_every=100), ihc_pairs(crops=False), model=model)
    assert outcome.model is model
    with pytest.raises(InputError, match="works at"):
        train(_tiny_config(steps=1, working_size=2 * SIZE), ihc_pairs(crops=False), model=model)
    capsys.readouterr()
    assert main(["train", "--steps", "1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("histoaffine: error: no training data")


def test_real_pairs_learn_from_the_refinement_and_validate_from_the_pose():
    """A training pair's target is the refinement's result (landmark-free), close to the truth; a
    validation pair keeps the search's first pose and no target, as the network alone meets it."""
    from napari_histoaffine.sample import make_pair

    pair = make_pair()
    teach = pose_training_pair(pair.moving, pair.fixed, pair.moving_landmarks, pair.fixed_landmarks, SIZE)
    moved = transforms.apply_to_points(transforms.compose(teach.target, teach.fixed_to_original),
                                       teach.moving_landmarks)
    error = np.median(np.linalg.norm(moved - pair.fixed_landmarks, axis=1)) / teach.fixed_diagonal
    assert error < 0.01
    sample = make_sample(teach, _tiny_config(), np.random.default_rng(0))
    assert sample.truth is not None
    held = pose_validation_pair(pair.moving, pair.fixed, pair.moving_landmarks, pair.fixed_landmarks, SIZE)
    assert held.target is None and make_sample(held, _tiny_config(), None).truth is None


def test_cli_reports_before_and_after_as_register_does(tmp_path, capsys):
    """``histoaffine train`` judges the network it writes against the one it started from, on the held-out
    pair, with the registration engine itself: Register's figures and the network alone's, before → after."""
    from napari_histoaffine.files.images import read_pair
    from napari_histoaffine.files.tables import read_landmarks
    from napari_histoaffine.registration.options import RegistrationOptions
    from napari_histoaffine.registration.pipeline import register

    pair, table = _two_pair_table(tmp_path)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--pairs", str(table), "--holdout-stains", "CD31", "--steps", "2", "--accumulation", "1",
                 "--working-size", "96", "--width", "8", "--patch-size", "96", "--validate-every", "1",
                 "--out", str(out), "--quiet"]) == 0
    said = capsys.readouterr()
    judged = json.loads(said.out)["judged"]
    assert [p["name"] for p in judged["pairs"]] == ["b"]
    lines = said.err.splitlines()
    assert any(line.startswith("  b: Register rTRE ") and "network alone rTRE" in line for line in lines)
    assert any(line.strip().startswith("Register: median rTRE ") and "→" in line and line.endswith("on 1 pair")
               for line in lines)
    assert any(line.strip().startswith("network alone: median rTRE ") for line in lines)
    assert json.loads((out / "judgement.json").read_text()) == judged
    assert ("histoaffine: warning: " in said.err) == judged["worse"]
    # the "after" figure is what Register (the engine, default options) gives with the written network
    moving, fixed = read_pair(tmp_path / "b-CD31.png", tmp_path / "fixed.png", RegistrationOptions().working_size)
    result = register(moving, fixed, RegistrationOptions(model=str(out / "model.safetensors")))
    moved = transforms.apply_to_points(result.matrix, read_landmarks(tmp_path / "b-CD31.csv"))
    rtre = np.median(np.linalg.norm(moved - pair.fixed_landmarks, axis=1)) / np.hypot(*fixed.full_shape[:2])
    assert abs(judged["pairs"][0]["after"]["Register"]["rtre"] - rtre) < 1e-6
