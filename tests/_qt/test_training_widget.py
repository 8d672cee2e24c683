"""The Fine-tune widget, opened through the npe2 manifest, on the sample pair (run under xvfb-run)."""
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_histoaffine._qt import training_offer
from napari_histoaffine._qt import training_widget as tw
from napari_histoaffine._qt.common import BUNDLED, WEIGHTS_FILE
from napari_histoaffine._qt.training_settings import NEW
from napari_histoaffine.files.images import read_image, write_image
from napari_histoaffine.files.tables import write_landmarks
from napari_histoaffine.registration.network import AffineNet
from napari_histoaffine.registration.options import RegistrationOptions
from napari_histoaffine.registration.pipeline import register
from napari_histoaffine.registration.weights import load_model, read_model_metadata
from napari_histoaffine.progress import Progress
from napari_histoaffine.sample import make_pair
from napari_histoaffine.training.judge import ALONE, REGISTER, Figure, Judgement, PairFigures

TIMEOUT_MS = 60_000
SHARED_IMAGES = Path(__file__).resolve().parents[3] / "shared" / "data" / "anhir-lung-lesion-3" / "images"
FINE_TUNE_STEPS = 20


@pytest.fixture
def setup(make_napari_viewer, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    messages = []
    for name in ("show_error", "show_warning", "show_info"):
        for module in (tw, training_offer):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, messages.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-histoaffine", "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Fine-tune network")
    yield viewer, widget, messages
    torch.set_num_threads(threads)


def configure(widget, steps, per_epoch, size=128, width=8, lr=1e-3, accumulation=1, augmentation=1.0):
    settings = widget.settings
    settings.start_from.value = NEW
    settings.width.value = width
    settings.length.value = steps
    settings.steps_per_epoch.value = per_epoch
    settings.working_size.value = size
    settings.lr.value = lr
    settings.accumulation.value = accumulation
    settings.augmentation.value = augmentation


def test_train_stop_save_use(qtbot, setup, tmp_path):
    viewer, widget, messages = setup
    assert widget.pickers.moving_combo.currentText() == "moving (restained)" and widget.pickers.fixed_combo.currentText() == "fixed (IHC)"
    widget.add_layer_pair()
    assert widget.pair_list.item(0).text().endswith("(+ landmarks)")
    configure(widget, steps=100_000, per_epoch=2)
    updates = []
    widget.updated.connect(updates.append)
    widget.start_button.click()
    assert widget.worker is not None and not widget.save_button.isEnabled()
    qtbot.waitUntil(lambda: sum(getattr(u, "loss", None) is not None for u in updates) >= 3, timeout=TIMEOUT_MS)
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not messages
    trained = [u for u in updates if isinstance(u, tw.TrainingUpdate)]
    assert trained[-1].stage == "stopped" and widget.outcome.stopped
    assert updates[-1].stage == "judging" and widget.judgement is not None  # then judged as Register does
    assert len(widget.loss_line.get_xdata()) >= 3 and len(widget.val_line.get_xdata()) >= 2
    assert any(u.metrics.get("val_rtre") is not None for u in updates[1:])  # the landmark layers give rTRE
    assert "left" not in widget.progress.format() and widget.save_button.isEnabled()  # no stale time left
    widget.save(tmp_path / "tuned.safetensors")
    model = load_model(tmp_path / "tuned.safetensors")
    assert isinstance(model, AffineNet) and model.config.width == 8
    assert read_model_metadata(tmp_path / "tuned.safetensors")["extra"]["training"]["working_size"] == 128

    widget.use_for_registration()  # no Register widget open: a clear message, nothing else
    assert "Register sections" in messages.pop()
    _, register_widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    widget.use_for_registration()
    assert register_widget.model_combo.currentText() == WEIGHTS_FILE
    assert register_widget._model() == str(widget.model_path)


def test_stop_during_a_step_is_prompt(qtbot, setup):
    """Full-size network, 8 pairs per step: Stop in the middle of a step ends the run within seconds."""
    _, widget, messages = setup
    widget.add_layer_pair()
    configure(widget, steps=1000, per_epoch=1000, size=384, width=32, accumulation=8)
    updates = []
    widget.updated.connect(updates.append)
    widget.start_button.click()
    qtbot.waitUntil(lambda: any(getattr(u, "stage", "") == "training" for u in updates), timeout=TIMEOUT_MS)
    qtbot.wait(300)  # inside the first step's pairs
    start = time.monotonic()
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert time.monotonic() - start < 10
    assert widget.outcome.stopped and widget.outcome.steps == 0
    assert widget.model_path is None  # nothing trained: no "best at step 0" network on offer
    widget._ask_save()
    assert "Nothing has been trained yet" in messages[-1]


def test_stop_while_a_long_table_is_prepared_is_immediate(qtbot, setup, tmp_path):
    """A 60-pair table is posed pair by pair (seconds in all): Stop ends it within a second and
    offers nothing to save."""
    _, widget, messages = setup
    pair = make_pair()
    write_image(tmp_path / "fixed.png", pair.fixed)
    write_landmarks(tmp_path / "fixed.csv", pair.fixed_landmarks)
    write_landmarks(tmp_path / "moving.csv", pair.moving_landmarks)
    rows = []
    for i in range(60):  # a file per pair: each is posed, none comes from the pose cache
        write_image(tmp_path / f"moving{i}.png", pair.moving)
        rows.append(f"moving{i}.png,fixed.png,moving.csv,fixed.csv,case{i}\n")
    table = tmp_path / "pairs.csv"
    table.write_text("Source image,Target image,Source landmarks,Target landmarks,Case\n" + "".join(rows))
    widget.add_table(table)
    configure(widget, steps=10, per_epoch=10)
    widget.start_button.click()
    qtbot.waitUntil(lambda: "Preparing" in widget.status.text(), timeout=TIMEOUT_MS)
    qtbot.wait(200)
    start = time.monotonic()
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert time.monotonic() - start < 1.0
    assert widget.outcome is None and widget.model_path is None and "before training" in widget.status.text()
    widget._ask_save()
    assert "Nothing has been trained yet" in messages[-1]


def test_training_a_new_network_raises_the_pairs_ncc(qtbot, setup, tmp_path):
    """A new network, 20 seeded steps on the sample pair (augmentation off to keep it short): it must
    correct the residual shear and scale that the pose search leaves.
    """
    _, widget, messages = setup
    widget.add_layer_pair()
    configure(widget, steps=20, per_epoch=10, augmentation=0.0)
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not messages and not widget.outcome.stopped and widget.outcome.steps == 20
    widget.save(tmp_path / "tuned.safetensors")
    pair = make_pair()
    pose_only = register(pair.moving, pair.fixed, RegistrationOptions(model=None, refine=False, working_size=128))
    tuned = load_model(tmp_path / "tuned.safetensors")
    after = register(pair.moving, pair.fixed, RegistrationOptions(model=tuned, refine=False, working_size=128))
    # the pose search's scale check leaves less to correct than it used to (NCC 0.60, was 0.57)
    assert after.ncc_after > pose_only.ncc_after + 0.04


def test_fine_tuning_the_shipped_weights_raises_the_pairs_ncc(qtbot, setup):
    """From the bundled network, a few seeded steps on a real pair of stains: its NCC after registration
    rises. (On the synthetic sample pair the bundled network is already within a pixel: no headroom.)"""
    if not SHARED_IMAGES.is_dir():
        pytest.skip(f"needs the shared lung-lesion images in {SHARED_IMAGES}")
    viewer, widget, messages = setup
    moving = read_image(SHARED_IMAGES / "29-041-Izd2-w35-proSPC-4-les3.jpg", max_long_side=448).data
    fixed = read_image(SHARED_IMAGES / "29-041-Izd2-w35-Cc10-5-les3.jpg", max_long_side=448).data
    viewer.add_image(moving, name="proSPC", rgb=True)
    viewer.add_image(fixed, name="Cc10", rgb=True)
    widget.pickers.moving_combo.setCurrentText("proSPC")
    widget.pickers.fixed_combo.setCurrentText("Cc10")
    widget.add_layer_pair()
    widget.settings.start_from.value = BUNDLED
    widget.settings.length.value = FINE_TUNE_STEPS
    widget.settings.steps_per_epoch.value = FINE_TUNE_STEPS
    widget.settings.accumulation.value = 1
    widget.settings.augmentation.value = 0.0
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not messages and widget.outcome.steps == FINE_TUNE_STEPS
    before = register(moving, fixed, RegistrationOptions(refine=False))
    after = register(moving, fixed, RegistrationOptions(model=load_model(widget.model_path), refine=False))
    assert after.ncc_after > before.ncc_after + 0.01


def _register_rtre(qtbot, register_widget, refine: bool) -> float:
    """Median rTRE of the Register dock's landmark table after a registration with its current model."""
    register_widget.refine_check.setChecked(refine)
    register_widget.register_button.click()
    qtbot.waitUntil(lambda: register_widget.worker is None, timeout=TIMEOUT_MS)
    return float(np.median(register_widget.table.rtre))


def test_before_and_after_are_what_register_reports(qtbot, setup):
    """From the bundled network, two steps on the sample pair: the dock's figures before → after (Register
    and the network alone) are those the Register dock shows with the bundled and with the fine-tuned
    network, to 1e-6."""
    viewer, widget, messages = setup
    widget.add_layer_pair()
    widget.settings.start_from.value = BUNDLED
    widget.settings.length.value = 2
    widget.settings.steps_per_epoch.value = 1
    widget.settings.accumulation.value = 1
    widget.settings.augmentation.value = 0.0
    updates = []
    widget.updated.connect(updates.append)
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not messages and widget.outcome.steps == 2
    assert any(getattr(u, "stage", "") == "judging" for u in updates)
    judgement = widget.judgement
    assert [p.name for p in judgement.pairs] == ["moving (restained) → fixed (IHC)"]
    figures = judgement.pairs[0]
    assert "Register: median rTRE" in widget.offer.figures.text() and "network alone: median rTRE" in \
        widget.offer.figures.text()
    assert "validates" in widget.status.text()
    _, register_widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    assert register_widget.model_combo.currentText() == BUNDLED
    before = (_register_rtre(qtbot, register_widget, True), _register_rtre(qtbot, register_widget, False))
    widget.use_for_registration(anyway=judgement.worse)
    assert register_widget._model() == str(widget.model_path)
    after = (_register_rtre(qtbot, register_widget, True), _register_rtre(qtbot, register_widget, False))
    np.testing.assert_allclose(before, (figures.before[REGISTER].rtre, figures.before[ALONE].rtre), rtol=0, atol=1e-6)
    np.testing.assert_allclose(after, (figures.after[REGISTER].rtre, figures.after[ALONE].rtre), rtol=0, atol=1e-6)


def test_a_worse_network_is_not_switched_in_without_confirmation(qtbot, setup, monkeypatch):
    """A run whose network validates worse than its start (the issue's numbers: Register's rTRE 0.0031 →
    0.0038): the dock says so, 'Use for registration' is off and refuses, only 'Use it anyway' switches."""
    viewer, widget, messages = setup

    def worse_judgement(outcome, judged, before):
        assert len(judged) == 1 and before is not None
        yield Progress("judging", 0.0, "as Register: the pair")
        return Judgement((PairFigures("pair", {REGISTER: Figure(0.0031, 0.7, 1.0), ALONE: Figure(0.030, 0.6, 0.9)},
                                      {REGISTER: Figure(0.0038, 0.7, 1.0), ALONE: Figure(0.020, 0.6, 0.9)}),))

    monkeypatch.setattr(tw, "judge_outcome_steps", worse_judgement)
    _, register_widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    widget.add_layer_pair()
    configure(widget, steps=2, per_epoch=1)
    widget.start_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not messages and widget.judgement.worse and widget.model_path is not None
    assert "validates worse" in widget.status.text() and "0.0031 → 0.0038" in widget.status.text()
    assert "Use it anyway" in widget.offer.figures.text()
    assert not widget.use_button.isEnabled() and widget.save_button.isEnabled()
    assert widget.anyway_button.isEnabled() and not widget.anyway_button.isHidden()
    widget.use_for_registration()  # the plain action refuses, saying why
    assert "validates worse" in messages.pop() and register_widget.model_combo.currentText() == BUNDLED
    widget.anyway_button.click()
    assert register_widget.model_combo.currentText() == WEIGHTS_FILE
    assert register_widget._model() == str(widget.model_path) and "validates worse" in messages.pop()
