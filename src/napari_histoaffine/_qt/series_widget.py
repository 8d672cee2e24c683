"""Dock widget registering a series of sections onto one reference layer at once."""
from __future__ import annotations

from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QLabel, QListWidget, QListWidgetItem, QProgressBar, QWidget

from ..errors import HistoAffineError, InputError
from ..evaluation.series import register_sections_steps
from ..plugin.layer_transforms import data_to_world_matrix, pair_arrays
from ..plugin.session import SavedLooks, show_registered
from ..registration.options import RegistrationOptions
from ..registration.preprocess import DEFAULT_WORKING_SIZE
from ..registration.weights import default_weights_path
from .common import DockJobs, LayerCombo, make_button, scrolled_layout, steps_worker


class SeriesWidget(QWidget):
    """Pick a reference and any number of moving layers, *Register all*: one worker, per-section progress,
    Cancel between sections, every section aligned at once, a verdict per section; Reset restores all."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.background = DockJobs(self)  # closing the dock or the viewer stops the series; nothing is applied
        self.results: dict = {}
        self.looks = SavedLooks()  # the sections as they were before the series was applied
        self.reference_combo = LayerCombo()
        self.sections = QListWidget()
        self.register_button = make_button("Register all", self.start)
        self.cancel_button = make_button("Cancel", self.cancel)
        self.reset_button = make_button("Reset", self.reset)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("Pick the reference and tick the sections to align onto it.")
        self.status.setWordWrap(True)
        self.verdicts = QListWidget()
        form = QFormLayout()
        form.addRow("Reference", self.reference_combo)
        layout = scrolled_layout(self)
        layout.addLayout(form)
        layout.addWidget(QLabel("Sections to align:"))
        layout.addWidget(self.sections)
        for button in (self.register_button, self.cancel_button, self.reset_button):
            layout.addWidget(button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Verdict per section:"))
        layout.addWidget(self.verdicts)
        self.cancel_button.setEnabled(False)
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(self.refresh)
        self.reference_combo.currentTextChanged.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None) -> None:
        """List the image layers: the reference in the menu, every other one as a section (ticked by default)."""
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        current = self.reference_combo.currentText()
        self.reference_combo.blockSignals(True)
        self.reference_combo.clear()
        self.reference_combo.addItems(names)
        self.reference_combo.setCurrentText(current if current in names else (names[0] if names else ""))
        self.reference_combo.blockSignals(False)
        ticked = {self.sections.item(i).text(): self.sections.item(i).checkState() for i in range(self.sections.count())}
        self.sections.clear()
        for name in names:
            if name != self.reference_combo.currentText():
                item = QListWidgetItem(name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(ticked.get(name, Qt.CheckState.Checked))
                self.sections.addItem(item)

    def ticked(self) -> list[str]:
        return [self.sections.item(i).text() for i in range(self.sections.count())
                if self.sections.item(i).checkState() == Qt.CheckState.Checked]

    def start(self) -> None:
        """Read every ticked section at the reference's pixel size, then register them in one worker."""
        if self.worker is not None:
            return
        try:
            names = self.ticked()
            if not self.reference_combo.currentText() or not names:
                raise InputError("Pick a reference layer and tick at least one section to align onto it")
            reference_layer = self.viewer.layers[self.reference_combo.currentText()]
            jobs, reference, reference_full = [], None, None
            for name in names:
                (reference, reference_full), (moving, moving_full) = pair_arrays(
                    (reference_layer, self.viewer.layers[name]), DEFAULT_WORKING_SIZE)
                jobs.append((name, moving, moving_full))
        except HistoAffineError as exc:
            show_error(str(exc))
            self.status.setText("Not registered: the input was refused (see the message).")
            return
        options = RegistrationOptions(model="default" if default_weights_path() else None)
        self._reference = reference_layer
        self.worker = steps_worker(register_sections_steps(reference, jobs, reference_full, options))
        self.register_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"Registering {len(jobs)} sections…")
        self.background.start(self.worker, yielded=lambda item: (self.progress.setValue(round(100 * item.fraction)),
                                                           self.status.setText(item.message)),
                        returned=self._on_registered, aborted=lambda: self.status.setText("Cancelled; layers unchanged."),
                        errored=lambda exc: show_error(f"Series registration failed: {exc}"), finished=self._on_finished)

    def cancel(self) -> None:
        """Stop after the section being registered; nothing is applied."""
        if self.worker is not None:
            self.status.setText("Cancelling…")
            self.worker.quit()

    def _on_finished(self) -> None:
        self.worker = None
        self.register_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_registered(self, outcomes: dict) -> None:
        """Align every registered section at once and list the verdicts."""
        if self._reference not in self.viewer.layers:
            self.status.setText("Nothing applied: the reference layer was removed while the series ran.")
            return
        reference_world = data_to_world_matrix(self._reference)
        self.verdicts.clear()
        for name, outcome in outcomes.items():
            layer = self.viewer.layers[name] if name in self.viewer.layers else None
            if isinstance(outcome, str) or layer is None:
                self.verdicts.addItem(outcome if isinstance(outcome, str) else f"{name}: removed while it ran")
                continue
            self.looks.keep(layer)
            show_registered(layer, outcome.matrix, reference_world)
            self.verdicts.addItem(f"{name}: {outcome.headline}")
        self.results = outcomes
        done = sum(not isinstance(o, str) for o in outcomes.values())
        self.status.setText(f"Aligned {done} of {len(outcomes)} sections onto '{self._reference.name}'.")

    def reset(self) -> None:
        """Every aligned section gets back its own affine and opacity."""
        self.looks.restore()
        self.results = {}
        self.verdicts.clear()
        self.status.setText("Reset: layers are as they were.")
