"""The Fine-tune widget: train the network on the user's own sections, without code.

Pairs come from image layers (optionally with landmark layers, for rTRE), ANHIR pairs tables or
folders. Training is :func:`napari_histoaffine.training.train`, the loop of ``histoaffine train``,
run in a worker: its :class:`~napari_histoaffine.training.TrainingUpdate` items reach the dock
through a Qt signal, Stop is its ``should_stop``. Checkpoints go to a temporary run folder (written
atomically by the loop); Save copies the best one atomically to a file the user picks.
"""
from __future__ import annotations

import copy
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.layers import Points
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QSpinBox,
    QWidget,
)

from ..errors import HistoAffineError, InputError
from ..files.atomic import atomic_write
from ..plugin.layer_transforms import layer_matrices, pair_arrays, points_between, rowcol_to_xy
from ..registration.network import NetworkConfig
from ..registration.weights import default_weights_path, resolve_model
from ..training import TrainingConfig, TrainingUpdate, array_pair, folder_pairs, table_pairs, train
from .common import BUNDLED, WEIGHTS_FILE, browse_weights, make_button, scrolled_layout
from .layer_pickers import LayerPairPicker
from .register_widget import RegisterWidget

NEW = "new network"
FINE_TUNE_LR = 1e-4  # the paper's rate: gentle enough to adapt trained weights (a new network learns faster at 1e-3)
# scaled by "augmentation strength" (0: none, 1: the training defaults); scale ranges as powers
_AUGMENTATION = ("rotation_deg", "shear", "translation", "residual_rotation_deg", "residual_shear",
                 "residual_translation", "stain_jitter", "brightness", "contrast")
_SCALE_RANGES = ("scale_range", "residual_scale_range")
DRAW_INTERVAL_S = 0.5


def augmentation(strength: float) -> dict:
    """TrainingConfig augmentation fields at ``strength`` times the defaults."""
    d = TrainingConfig()
    return {**{k: getattr(d, k) * strength for k in _AUGMENTATION},
            **{k: tuple(v ** strength for v in getattr(d, k)) for k in _SCALE_RANGES}}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _landmarks_xy(points: Points, image) -> np.ndarray:
    """A Points layer's landmarks as ``(x, y)`` level-0 pixels of ``image`` (through the layers' own scale/translate;
    the ``affine`` that registration sets on a moving layer is ignored)."""
    return rowcol_to_xy(points_between(points.data, layer_matrices(points)[0], layer_matrices(image)[0]))


def _pairs(source, working_size: int, should_stop) -> tuple[list, list]:
    """(training pairs, validation pairs) of one source; posed pairs validate as at inference."""
    kind, value = source
    if kind == "folder":
        return folder_pairs(value, working_size), []
    pairs = (table_pairs(value, working_size, should_stop=should_stop)[0] if kind == "table"
             else [array_pair(**value, working_size=working_size)])
    return pairs, pairs


@thread_worker
def _train_worker(sources, config, model, report, should_stop):
    """Pose every pair (stoppable between sources), then run the training loop; returns its TrainingOutcome."""
    pairs, validation = [], []
    for i, source in enumerate(sources):
        report(f"Preparing pair source {i + 1}/{len(sources)} (pose search)…")
        t, v = _pairs(source, config.working_size, should_stop)
        pairs += t
        validation += v
        if should_stop():
            return None
    return train(config, pairs, validation=validation or None, model=model, on_update=report,
                 should_stop=should_stop)


class TrainingWidget(QWidget):
    """Dock widget fine-tuning (or training) the affine network on pairs of sections."""

    updated = Signal(object)  # TrainingUpdate or a status message, from the worker thread

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.sources: list[tuple] = []
        self.worker = None
        self.outcome = None
        self._stop = threading.Event()
        self._runs = tempfile.TemporaryDirectory(prefix="histoaffine-finetune-")
        self._curve = ([], [], [], [])  # loss steps, losses, validation steps, validation -NCC
        self._validation: dict = {}     # metrics of the last per-epoch validation
        self._drawn = 0.0
        self.pickers = LayerPairPicker(napari_viewer)
        self._build()
        self.updated.connect(self._on_update)

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        self.pair_list = QListWidget()
        self.pair_list.setMaximumHeight(80)
        pair_buttons = [make_button("Add pair", self.add_layer_pair), make_button("Pairs table…", self._ask_table),
                        make_button("Folder…", self._ask_folder), make_button("Remove", self.remove_selected)]
        pairs_box = QGroupBox("Training pairs")
        form = QFormLayout(pairs_box)
        self.pickers.add_rows(form)
        form.addRow(_row(*pair_buttons))
        form.addRow(self.pair_list)

        d = TrainingConfig()
        self.init_combo = QComboBox()
        self.init_combo.addItems(([BUNDLED] if default_weights_path() else []) + [WEIGHTS_FILE, NEW])
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("start from these .safetensors weights")
        browse = make_button("…", lambda: browse_weights(self, self.weights_edit, self.init_combo))
        self.width_spin = _spin(4, 256, NetworkConfig().width)
        self.length_spin, self.unit_combo = _spin(1, 1_000_000, d.steps), QComboBox()
        self.unit_combo.addItems(["steps", "epochs"])
        self.epoch_spin = _spin(1, 100_000, 100)
        self.lr_spin = QDoubleSpinBox(decimals=6, minimum=1e-6, maximum=0.1, singleStep=1e-5, value=FINE_TUNE_LR)
        self.accumulation_spin = _spin(1, 64, d.accumulation)
        self.augmentation_spin = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=2.0, singleStep=0.1, value=1.0)
        self.size_spin = _spin(64, 4096, TrainingConfig().working_size)
        settings = QGroupBox("Settings")
        form = QFormLayout(settings)
        form.addRow("Start from", self.init_combo)
        form.addRow("", _row(self.weights_edit, browse))
        form.addRow("New network width", self.width_spin)
        form.addRow("Length", _row(self.length_spin, self.unit_combo))
        form.addRow("Steps per epoch", self.epoch_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Pairs per step", self.accumulation_spin)
        form.addRow("Augmentation strength", self.augmentation_spin)
        form.addRow("Working size (px)", self.size_spin)
        self.init_combo.currentTextChanged.connect(self._init_changed)
        self._init_changed(self.init_combo.currentText())

        self.start_button, self.stop_button = make_button("Start", self.start), make_button("Stop", self.stop)
        self.save_button = make_button("Save…", self._ask_save)
        self.use_button = make_button("Use for registration", self.use_for_registration)
        self.progress = QProgressBar()
        self.status = QLabel("Add training pairs and click Start.")
        self.status.setWordWrap(True)
        self.figure = Figure(figsize=(4, 2.6), dpi=80, layout="tight")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        ax = self.figure.add_subplot(111)
        self.loss_line, = ax.plot([], [], color="C0", lw=1, label="training loss (−NCC + target distance)")
        self.val_line, = ax.plot([], [], "o-", color="C3", label="validation −NCC")
        ax.set_xlabel("optimizer step")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)

        layout = scrolled_layout(self)
        layout.addWidget(pairs_box)
        layout.addWidget(settings)
        layout.addLayout(_row(self.start_button, self.stop_button))
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas)
        layout.addLayout(_row(self.save_button, self.use_button))
        self._set_running(False)

    def _init_changed(self, text: str) -> None:
        self.weights_edit.setEnabled(text == WEIGHTS_FILE)
        self.width_spin.setEnabled(text == NEW)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        done = not running and self.outcome is not None and self.model_path is not None
        self.save_button.setEnabled(done)
        self.use_button.setEnabled(done)

    # ---------------------------------------------------------------- training pairs
    def add_layer_pair(self) -> None:
        """Add the picked moving/fixed image layers (and landmark layers, if picked) as a training pair."""
        try:
            fixed, moving, fixed_pts, moving_pts = self.pickers.selected()
        except HistoAffineError as exc:
            show_error(str(exc))
            return
        landmarks = "" if fixed_pts is None or moving_pts is None else " (+ landmarks)"
        self._add(("layers", (moving, fixed, moving_pts, fixed_pts)), f"{moving.name} → {fixed.name}{landmarks}")

    def add_table(self, path) -> None:
        """Add every pair of an ANHIR pairs table."""
        if not Path(path).is_file():
            show_error(f"Pairs table not found: '{path}'")
            return
        self._add(("table", str(path)), f"table {Path(path).name}")

    def add_folder(self, path) -> None:
        """Add every image of a folder (each paired with a re-stained, transformed copy of itself)."""
        if not Path(path).is_dir():
            show_error(f"Folder not found: '{path}'")
            return
        self._add(("folder", str(path)), f"folder {Path(path).name}")

    def _add(self, source, label: str) -> None:
        self.sources.append(source)
        self.pair_list.addItem(label)

    def remove_selected(self) -> None:
        for row in sorted((i.row() for i in self.pair_list.selectedIndexes()), reverse=True):
            self.pair_list.takeItem(row)
            del self.sources[row]

    def _ask_table(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "ANHIR pairs table", "", "CSV (*.csv)")
        if path:
            self.add_table(path)

    def _ask_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder of section images")
        if path:
            self.add_folder(path)

    # ---------------------------------------------------------------- inputs
    def config(self) -> TrainingConfig:
        """The run's TrainingConfig from the settings (validation once per epoch, checkpoints in a new run folder)."""
        epochs = self.unit_combo.currentText() == "epochs"
        return TrainingConfig(
            steps=self.length_spin.value(), epochs=self.length_spin.value() if epochs else None,
            steps_per_epoch=self.epoch_spin.value(), validate_every=self.epoch_spin.value(),
            accumulation=self.accumulation_spin.value(), lr=self.lr_spin.value(), working_size=self.size_spin.value(),
            network={"width": self.width_spin.value()} if self.init_combo.currentText() == NEW else {},
            out_dir=tempfile.mkdtemp(dir=self._runs.name), **augmentation(self.augmentation_spin.value()))

    def _start_model(self):
        """A private copy of the starting network (None: a new one); the cached models stay untouched."""
        choice = self.init_combo.currentText()
        if choice == NEW:
            return None
        path = "default" if choice == BUNDLED else self.weights_edit.text().strip()
        if choice == WEIGHTS_FILE and not Path(path).is_file():
            raise InputError(f"Weights file not found: '{path}'")
        return copy.deepcopy(resolve_model(path))

    def _resolved_sources(self, working_size: int) -> list[tuple]:
        """Layer pairs as arrays (read here, in the main thread); tables and folders as paths."""
        out = []
        for kind, value in self.sources:
            if kind != "layers":
                out.append((kind, value))
                continue
            moving, fixed, moving_pts, fixed_pts = value
            missing = [ly.name for ly in value if ly is not None and ly not in self.viewer.layers]
            if missing:
                raise InputError(f"Layer '{missing[0]}' of a training pair was removed: remove the pair or re-add it")
            (m, m_full), (f, f_full) = pair_arrays((moving, fixed), working_size)
            with_landmarks = moving_pts is not None and fixed_pts is not None
            out.append(("layers", {
                "moving": m, "fixed": f, "name": f"{moving.name} → {fixed.name}", "full_shapes": (m_full, f_full),
                "moving_landmarks_xy": _landmarks_xy(moving_pts, moving) if with_landmarks else None,
                "fixed_landmarks_xy": _landmarks_xy(fixed_pts, fixed) if with_landmarks else None}))
        return out

    # ---------------------------------------------------------------- training
    def start(self) -> None:
        """Check the inputs, then train in a worker thread."""
        if self.worker is not None:
            return
        try:
            if not self.sources:
                raise InputError("Add at least one training pair (layers, a pairs table or a folder)")
            model = self._start_model()
            if model is not None:  # a network is fine-tuned at the size it works at
                self.size_spin.setValue(model.config.input_long_side)
            config = self.config()
            sources = self._resolved_sources(config.working_size)
        except (HistoAffineError, OSError) as exc:
            show_error(str(exc))
            return
        self._stop.clear()
        self.outcome = None
        self._curve, self._validation = ([], [], [], []), {}
        self._draw()
        self.progress.setRange(0, config.total_steps(1))
        self.progress.setValue(0)
        self.status.setText("Starting…")
        self.worker = _train_worker(sources, config, model, self.updated.emit, self._stop.is_set)
        self.worker.returned.connect(self._on_returned)
        self.worker.errored.connect(lambda exc: show_error(f"Training failed: {exc}"))
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.worker.start()

    def stop(self) -> None:
        """Stop before the next pair; the best checkpoint so far is kept."""
        if self.worker is not None:
            self._stop.set()
            self.status.setText("Stopping…")

    def _on_update(self, item) -> None:
        if isinstance(item, str):
            self.status.setText(item)
            return
        u: TrainingUpdate = item
        steps, losses, val_steps, vals = self._curve
        if u.loss is not None and u.state == "training":
            steps.append(u.step)
            losses.append(u.loss)
        if u.validation is not None and u.state == "training":  # per-epoch validations (not the final repeat)
            val_steps.append(u.step)
            vals.append(-u.validation)
            self._validation = u.metrics
        self.progress.setRange(0, u.total_steps)
        self.progress.setValue(u.step)
        self.progress.setFormat(f"%v/%m steps · {_duration(u.eta)} left")
        parts = [f"{u.state} · step {u.step}/{u.total_steps}"]
        if u.loss is not None:
            parts.append(f"loss {u.loss:.4f}")
        if self._validation.get("val_ncc") is not None:
            parts.append(f"last validation NCC {self._validation['val_ncc']:.3f}")
        if self._validation.get("val_rtre") is not None:
            parts.append(f"rTRE {self._validation['val_rtre']:.4f}")
        self.status.setText(" · ".join(parts))
        if time.monotonic() - self._drawn > DRAW_INTERVAL_S:
            self._draw()

    def _draw(self) -> None:
        steps, losses, val_steps, vals = self._curve
        self.loss_line.set_data(steps, losses)
        self.val_line.set_data(val_steps, vals)
        ax = self.loss_line.axes
        ax.relim()
        ax.autoscale_view()
        self.canvas.draw_idle()
        self._drawn = time.monotonic()

    def _on_returned(self, outcome) -> None:
        self.outcome = outcome
        self._draw()
        if outcome is None:
            self.status.setText("Stopped before training began.")
        elif outcome.best_validation is not None:
            word = "Stopped" if outcome.stopped else "Finished"
            self.status.setText(f"{word} at step {outcome.steps}; best validation NCC {outcome.best_validation:.3f} "
                                f"at step {outcome.best_step} (kept for Save / Use for registration).")

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
        self.progress.setFormat("%v/%m steps")  # no time left to show once it has stopped

    # ---------------------------------------------------------------- output
    @property
    def model_path(self) -> Path | None:
        """The run's best checkpoint (weights + network and training config), once a step has trained it."""
        trained = self.outcome is not None and self.outcome.steps > 0
        path = self.outcome.best_path if trained else None
        return path if path is not None and path.is_file() else None

    def _trained_model(self) -> Path:
        if self.model_path is None:
            raise InputError("Nothing has been trained yet: start training and let at least one step run")
        return self.model_path

    def save(self, path) -> None:
        """Copy the best checkpoint to ``path`` atomically (a crash never leaves half a file)."""
        model = self._trained_model()
        with atomic_write(path, "wb") as fh:
            fh.write(model.read_bytes())

    def _ask_save(self) -> None:
        if self.model_path is None:
            show_warning("Nothing has been trained yet: start training and let at least one step run.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save fine-tuned network", "finetuned.safetensors",
                                              "safetensors (*.safetensors)")
        if not path:
            return
        try:
            self.save(path)
        except OSError as exc:
            show_error(f"Save failed: {exc}")
            return
        show_info(f"Saved {path}")

    def use_for_registration(self) -> None:
        """Point the open Register widget at this run's best network (its model menu switches back to the default)."""
        register = next((w for w in self.viewer.window.dock_widgets.values() if isinstance(w, RegisterWidget)), None)
        if register is None:
            show_warning("Open the 'Register sections' widget first, then click 'Use for registration' again.")
            return
        if self.model_path is None:
            show_warning("Nothing has been trained yet: start training and let at least one step run.")
            return
        register.weights_edit.setText(str(self.model_path))
        register.model_combo.setCurrentText(WEIGHTS_FILE)
        show_info("The Register widget now uses the fine-tuned network (choose 'bundled default' there to go back).")


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    spin = QSpinBox(minimum=lo, maximum=hi)
    spin.setValue(value)
    return spin


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row
