"""The Register widget's files: export the transform, the mapped landmarks or the warped slide; read a transform."""
from __future__ import annotations

import re
from pathlib import Path

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QLabel, QProgressBar, QVBoxLayout

from ..errors import HistoAffineError
from .common import DockJobs, make_button, steps_worker

TRANSFORM_FILTERS = "JSON (*.json);;elastix parameters (*.txt);;ITK transform (*.tfm)"


def with_filter_suffix(path: str, chosen_filter: str) -> str:
    """``path`` with the extension of the chosen file-dialog filter (``"ITK transform (*.tfm)"``) when it has none:
    the extension chooses the format written."""
    suffix = re.search(r"\(\*(\.[\w.]+)", chosen_filter or "")
    return path + suffix.group(1) if path and suffix and not Path(path).suffix else path


class ExportControls(QGroupBox):
    """Buttons that write the shown registration to files, and read one back.

    The whole-slide warp runs in a worker with its own progress bar and Cancel, so the dock stays
    usable meanwhile; a cancelled or failed warp leaves no file. ``register`` is the Register widget
    (its ``session`` holds the result; ``apply_saved_transform`` shows a file).
    """

    def __init__(self, register):
        super().__init__("Files")
        self.register = register
        self.worker = None
        self.background = DockJobs(register)  # the warp stops (its partial file removed) when the Register dock closes
        self.transform_button = make_button("Export transform…", self._ask_export_transform)
        self.landmarks_button = make_button("Export landmarks…", self._ask_export_landmarks)
        self.slide_button = make_button("Export warped slide…", self._ask_export_slide)
        self.apply_button = make_button("Apply saved transform…", self._ask_apply_transform)
        self.cancel_button = make_button("Cancel", self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        slide_row = QHBoxLayout()
        slide_row.addWidget(self.progress)
        slide_row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)  # a button a row: the dock stays narrow
        for item in (self.transform_button, self.landmarks_button, self.slide_button, slide_row, self.status,
                     self.apply_button):
            (layout.addLayout if isinstance(item, QHBoxLayout) else layout.addWidget)(item)
        self._show_slide_progress(False)
        self.set_result_enabled(False)

    def set_result_enabled(self, enabled: bool) -> None:
        """Exports need a shown registration (one slide warp at a time)."""
        self.transform_button.setEnabled(enabled)
        self.landmarks_button.setEnabled(enabled)
        self.slide_button.setEnabled(enabled and self.worker is None)

    def export_slide(self, path):
        """Warp the moving layer's file onto the fixed grid in a worker and return it; raises HistoAffineError
        (the layer has no file) before anything starts."""
        steps = self.register.session.slide_warp(path)
        self.worker = steps_worker(steps)
        self.progress.setValue(0)
        self.status.setText(f"Writing {Path(path).name}…")
        self._show_slide_progress(True)
        self.slide_button.setEnabled(False)
        # a quit worker only stops asking for blocks; closing the warp stops its writer and removes the partial file
        return self.background.start(self.worker, cleanup=steps.close,
                               yielded=lambda item: self.progress.setValue(round(100 * item.fraction)),
                               returned=lambda _: self._done(f"Saved {path}"),
                               aborted=lambda: self._done("Export cancelled: no file written."),
                               errored=lambda exc: self._done(f"Export failed: {exc}", error=True),
                               finished=self._on_finished)

    def cancel(self) -> None:
        """Stop the slide warp after the block being written; the partial file is removed."""
        if self.worker is not None:
            self.status.setText("Cancelling…")
            self.worker.quit()

    def _done(self, message: str, error: bool = False) -> None:
        (show_error if error else show_info)(message)
        self.status.setText(message)

    def _on_finished(self) -> None:
        self.worker = None
        self._show_slide_progress(False)
        self.set_result_enabled(self.register.session.result is not None)

    def _show_slide_progress(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)

    def _ask_export_transform(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export transform", "transform.json", TRANSFORM_FILTERS)
        self._export(self.register.session.export_transform, with_filter_suffix(path, chosen))

    def _ask_export_landmarks(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(self, "Export mapped landmarks", "registered_landmarks.csv",
                                                   "CSV (*.csv)")
        self._export(self.register.session.export_landmarks, with_filter_suffix(path, chosen))

    def _ask_export_slide(self) -> None:
        name = self.register.session.picked.moving.name
        path, _ = QFileDialog.getSaveFileName(self, "Export warped slide", f"{name}_registered.ome.tif",
                                              "OME-TIFF (*.ome.tif)")
        if path:
            try:
                self.export_slide(path)
            except HistoAffineError as exc:
                show_error(f"Export failed: {exc}")

    def _ask_apply_transform(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Apply a saved transform", "",
                                              "Transforms (*.json *.txt *.tfm);;All files (*)")
        if path:
            self.register.apply_saved_transform(path)

    @staticmethod
    def _export(write, path) -> None:
        if not path:
            return
        try:
            write(path)
        except (HistoAffineError, OSError) as exc:
            show_error(f"Export failed: {exc}")
            return
        show_info(f"Saved {path}")
