"""The Fine-tune widget: train the network on the user's own sections, without code.

Pairs come from image layers (optionally with landmark layers, for rTRE), ANHIR pairs tables or
folders, as :class:`~napari_histoaffine.training.data.DataSource` specs: the sources and the rule of
which pairs validate are those of ``histoaffine train``. A worker poses the pairs and runs the
training generator (:func:`~napari_histoaffine.training.loop.train_steps`), then judges the offered network
against the one it started from on the layer pairs, as Register does
(:func:`~napari_histoaffine.training.judge.judge_outcome_steps`); its progress items reach
the dock through the ``updated`` signal, and Stop sends it STOP: the loop stops before the next pair,
saves its checkpoint and returns what it trained. Closing the dock or napari stops it between two pairs
too, waiting for it briefly (:class:`~napari_histoaffine._qt.common.DockJobs`), so Python exits cleanly. Checkpoints go to a temporary run folder (written
atomically by the loop); Save copies the best one atomically to a file the user picks
(:class:`~napari_histoaffine._qt.training_offer.RunOffer`, which also keeps a worse network from Register
unless the user clicks "Use it anyway").
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QProgressBar,
    QWidget,
)

from ..errors import HistoAffineError, InputError
from ..plugin.training_sources import layer_pair_source
from ..progress import STOP
from ..registration.options import DEFAULT_WORKING_SIZE
from ..training.data import DataSource, training_data_steps
from ..training.judge import judge_outcome_steps, validation_sections
from ..training.loop import TrainingUpdate, new_network, train_steps
from .common import DockJobs, make_button, scrolled_layout, steps_worker
from .layer_pickers import LayerPairPicker
from .training_offer import RunOffer
from .training_settings import TrainingSettings

DRAW_INTERVAL_S = 0.5


def _fine_tune(sources, judged, config, model, before):
    """Pose the pairs, train, judge the offered network against ``before`` on ``judged`` as Register does;
    returns (TrainingOutcome, Judgement or None); (None, None) when stopped while the pairs were posed."""
    data = yield from training_data_steps(sources, config.working_size)
    if data is None:
        return None, None
    outcome = yield from train_steps(config, data, model=model)
    return outcome, (yield from judge_outcome_steps(outcome, judged, before))


class TrainingWidget(QWidget):
    """Dock widget fine-tuning (or training) the affine network on pairs of sections."""

    updated = Signal(object)  # every progress item of a run: Progress while posing pairs, then TrainingUpdate

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.sources: list = []  # DataSource, or the four layers of a layer pair (read when a run starts)
        self.worker = None
        self.background = DockJobs(self)  # closing the dock or the viewer stops the training between two steps
        self.outcome = None
        self.judgement = None
        self._runs = tempfile.TemporaryDirectory(prefix="histoaffine-finetune-")
        self._curve = ([], [], [], [])  # loss steps, losses, validation steps, validation -NCC
        self._drawn = 0.0
        self.pickers = LayerPairPicker(napari_viewer)
        self.settings = TrainingSettings()
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
        buttons = QGridLayout()  # two by two: the dock stays narrow
        for i, button in enumerate(pair_buttons):
            buttons.addWidget(button, i // 2, i % 2)
        form.addRow(buttons)
        form.addRow(self.pair_list)
        settings = QGroupBox("Settings")
        QHBoxLayout(settings).addWidget(self.settings.form.native)

        self.start_button, self.stop_button = make_button("Start", self.start), make_button("Stop", self.stop)
        self.offer = RunOffer(self.viewer)
        self.save_button, self.use_button = self.offer.save_button, self.offer.use_button
        self.anyway_button = self.offer.anyway_button
        self.progress = QProgressBar()
        self.progress.setFormat("%v/%m steps")
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
        layout.addWidget(self.offer)
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.offer.show_offer(None if running else self.model_path, None if running else self.judgement)

    # ---------------------------------------------------------------- training pairs
    def add_layer_pair(self) -> None:
        """Add the picked moving/fixed image layers (and landmark layers, if picked) as a training pair."""
        try:
            fixed, moving, fixed_pts, moving_pts = self.pickers.selected()
        except HistoAffineError as exc:
            show_error(str(exc))
            return
        landmarks = "" if fixed_pts is None or moving_pts is None else " (+ landmarks)"
        self._add((moving, fixed, moving_pts, fixed_pts), f"{moving.name} → {fixed.name}{landmarks}")

    def add_table(self, path) -> None:
        """Add every pair of an ANHIR pairs table."""
        if not Path(path).is_file():
            show_error(f"Pairs table not found: '{path}'")
            return
        self._add(DataSource("table", str(path)), f"table {Path(path).name}")

    def add_folder(self, path) -> None:
        """Add every image of a folder (each paired with a re-stained, transformed copy of itself)."""
        if not Path(path).is_dir():
            show_error(f"Folder not found: '{path}'")
            return
        self._add(DataSource("folder", str(path)), f"folder {Path(path).name}")

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

    def _data_sources(self, working_size: int) -> list[DataSource]:
        """The sources of the run, layer pairs read here (main thread) at ``working_size``: the training's, or
        Register's for judging the result as Register does."""
        sources = []
        for source in self.sources:
            if not isinstance(source, DataSource):
                missing = [ly.name for ly in source if ly is not None and ly not in self.viewer.layers]
                if missing:
                    raise InputError(f"Layer '{missing[0]}' of a training pair was removed: remove the pair or "
                                     "re-add it")
                source = layer_pair_source(*source, working_size)
            sources.append(source)
        return sources

    # ---------------------------------------------------------------- training
    def start(self) -> None:
        """Check the inputs, then pose the pairs and train in a worker thread."""
        if self.worker is not None:
            return
        try:
            if not self.sources:
                raise InputError("Add at least one training pair (layers, a pairs table or a folder)")
            model = self.settings.start_model()
            config = self.settings.config(out_dir=tempfile.mkdtemp(dir=self._runs.name))
            sources = self._data_sources(config.working_size)
            # judged as Register runs: layer pairs at its working size (read again only when training's differs)
            at_register = sources if config.working_size == DEFAULT_WORKING_SIZE else self._data_sources(
                DEFAULT_WORKING_SIZE)
            judged = validation_sections([s for s in at_register if s.kind == "layers"])
        except (HistoAffineError, OSError) as exc:
            show_error(str(exc))
            return
        self.outcome = self.judgement = None
        self._curve = ([], [], [], [])
        self._draw()
        self.progress.setRange(0, config.total_steps(1))
        self.progress.setValue(0)
        self.status.setText("Starting…")
        before = copy.deepcopy(model) if model is not None else new_network(config)  # training changes model
        steps = _fine_tune(sources, judged, config, model, before)
        self.worker = steps_worker(steps)
        self._set_running(True)
        self.background.start(self.worker, cleanup=steps.close,  # closed: the last checkpoint is saved
                        yielded=self.updated.emit, returned=self._on_returned,
                        errored=lambda exc: show_error(f"Training failed: {exc}"), finished=self._on_finished)

    def stop(self) -> None:
        """Stop before the next pair; the checkpoints so far are kept."""
        if self.worker is not None:
            self.worker.send(STOP)
            self.status.setText("Stopping…")

    def _on_update(self, item) -> None:
        if not isinstance(item, TrainingUpdate):
            judging = item.stage == "judging"
            self.status.setText(f"Judging {item.message}" if judging else f"Preparing training pairs: {item.message}")
            return
        steps, losses, val_steps, vals = self._curve
        if item.stage == "training" and item.loss is not None:
            steps.append(item.step)
            losses.append(item.loss)
        if item.stage == "training" and item.validation is not None:  # per-epoch validations (not the final repeat)
            val_steps.append(item.step)
            vals.append(-item.validation)
        self.progress.setRange(0, item.total_steps)
        self.progress.setValue(item.step)
        self.status.setText(item.message)
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

    def _on_returned(self, returned) -> None:
        outcome, judgement = self.outcome, self.judgement = returned
        self._draw()
        if outcome is None:
            self.status.setText("Stopped before training began.")
        elif outcome.best_validation is not None:
            word = "Stopped" if outcome.stopped else "Finished"
            judged = (judgement.verdict() if judgement is not None else
                      "Not compared with Register: add a layer pair to judge the network on your sections.")
            self.status.setText(f"{word} at step {outcome.steps}; the network of step {outcome.best_step} is kept "
                                f"for Save / Use for registration. {judged}")

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)

    # ---------------------------------------------------------------- output
    @property
    def model_path(self) -> Path | None:
        """The run's best checkpoint (weights + network and training config), once a step has trained it."""
        trained = self.outcome is not None and self.outcome.steps > 0
        path = self.outcome.best_path if trained else None
        return path if path is not None and path.is_file() else None

    def save(self, path) -> None:
        """Copy the best checkpoint to ``path`` atomically (see :meth:`RunOffer.save`)."""
        self.offer.save(path)

    def _ask_save(self) -> None:
        self.offer.ask_save()

    def use_for_registration(self, anyway: bool = False) -> None:
        """Point the open Register widget at this run's best network; one that validates worse than the network
        it started from only ``anyway`` (the "Use it anyway" button)."""
        self.offer.use(anyway)


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row
