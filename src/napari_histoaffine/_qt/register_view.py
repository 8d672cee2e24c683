"""The Register widget's controls and what they show; what they do is in :mod:`.register_widget`."""
from __future__ import annotations

import math

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from .. import transforms
from ..registration.weights import default_weights_path
from .annotation_controls import AnnotationControls
from .common import BUNDLED, WEIGHTS_FILE, browse_weights, make_button, scrolled_layout
from .correction_controls import CorrectionControls
from .export_controls import ExportControls
from .inspection_controls import InspectionControls
from .landmark_table import LandmarkTable
from .reader_offer import ReaderOffer

NOTES = {"refit": " (matrix refitted from landmarks; NCC and verdict are the automatic result's)",
         "by hand": " (moved by hand: the verdict above is the registration's; Refine from here judges this pose)"}
SUMMARY_TIP = ("NCC: normalised cross-correlation of the tissue structure before → after (1 is a perfect match; it "
               "differs between stains, so compare it within a pair).\nConfidence: how clearly this pose beats every "
               "different pose tried on this pair (the mirror image, other turns); flagged below 50 %.")
CANDIDATES_TIP = ("Poses the rotation/mirror search found, best first (score: its structure NCC at low resolution; "
                  "your own pose, from Refine from here, has none); ▶ marks the pose shown now. Select one and "
                  "Try it to re-run the later stages from it.")
SAME_POSE_DEG = 10.0  # the shown pose is a candidate's when in its mirror state and this close in rotation (as the verdict)
MASKS = ("Show tissue masks", "Hide tissue masks")


class RegisterView(QWidget):
    """The Register dock's controls, laid out in a scroll area, and how a registration is shown in them.

    The subclass provides ``session``, ``pickers``, ``worker``, ``result`` and the slots the buttons call.
    """

    def _build(self) -> None:
        self.model_combo = QComboBox()
        self.model_combo.addItems([BUNDLED, WEIGHTS_FILE])
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("path to .safetensors weights")
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit)
        weights_row.addWidget(make_button("…", lambda: browse_weights(self, self.weights_edit, self.model_combo)))
        model_note = QLabel("" if default_weights_path() else "No network bundled yet: the default runs pose search "
                            "+ refinement only.")
        model_note.setWordWrap(True)
        self.refine_check = QCheckBox("refinement")
        self.refine_check.setChecked(True)
        form = QFormLayout()
        form.addRow(make_button("Open slides or landmarks…", self.open_files))  # a row of its own: the dock stays narrow
        self.reader_offer = ReaderOffer()  # napari's File → Open as this plugin's reader, on the user's click
        form.addRow(self.reader_offer)
        self.pickers.add_rows(form)
        for label, row in (("Model", self.model_combo), ("", weights_row), ("", model_note), ("", self.refine_check)):
            form.addRow(label, row)

        self.register_button = make_button("Register", self.start_registration)
        self.cancel_button = make_button("Cancel", self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("Pick two image layers and click Register.")
        self.status.setWordWrap(True)

        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setToolTip(SUMMARY_TIP)
        self.alternative_button = make_button("Try alternative pose", self.try_alternative)
        self.candidates = QListWidget()
        self.candidates.setMaximumHeight(90)
        self.candidates.setToolTip(CANDIDATES_TIP)
        self.candidates.itemDoubleClicked.connect(lambda _: self.try_candidate())
        self.candidates.itemSelectionChanged.connect(self._update_try)
        self.try_button = make_button("Try selected pose", lambda: self.try_candidate())
        self.overlay_button = make_button("Toggle overlay", self.session.toggle_overlay)
        self.masks_button = make_button(MASKS[0], self.toggle_masks)
        self.refit_button = make_button("Refit from landmarks", self.refit_from_landmarks)
        self.reset_button = make_button("Reset", self.reset)
        self.table = LandmarkTable()
        self.table.table.cellClicked.connect(self.centre_on_landmark)
        result_box = QGroupBox("Result")
        box = QVBoxLayout(result_box)
        candidates_label = QLabel("Pose candidates (angle, mirror, score):")
        candidates_label.setWordWrap(True)
        for widget in (self.summary, self.alternative_button, candidates_label, self.candidates):
            box.addWidget(widget)
        for row in ((self.try_button, self.overlay_button), (self.masks_button, self.reset_button),
                    (self.refit_button,)):
            box.addLayout(_row(*row))
        box.addWidget(self.table)

        self.files = ExportControls(self)
        self.annotate = AnnotationControls(self)
        self.correct = CorrectionControls(self)
        self.inspect = InspectionControls(self.viewer)
        layout = scrolled_layout(self)
        layout.addLayout(form)
        layout.addLayout(_row(self.register_button, self.cancel_button))
        for widget in (self.progress, self.status, result_box, self.files, self.annotate, self.correct,
                       self.inspect):
            layout.addWidget(widget)
        self._set_result_enabled(False)

    def _set_result_enabled(self, enabled: bool) -> None:
        for w in (self.overlay_button, self.refit_button):
            w.setEnabled(enabled)
        self.files.set_result_enabled(enabled)
        self.masks_button.setEnabled(enabled and self.result is not None and self.result.masks is not None)
        self.masks_button.setText(MASKS[bool(self.session.mask_layers)])
        self._update_try()
        self._offer_alternative()

    def _set_running(self, running: bool) -> None:
        """While a registration runs only Cancel acts on it: what would change the pose is off (the result would
        replace the change)."""
        self.register_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.correct.set_idle(not running)
        self._update_try()
        self._offer_alternative()

    def _stopped(self, message: str) -> None:
        """A run ended without a result (cancelled or failed): no stale progress."""
        self.progress.setValue(0)
        self.status.setText(message)

    def _update_try(self) -> None:
        """*Try selected pose* acts only on a selected candidate, when idle."""
        self.try_button.setEnabled(self.result is not None and self.worker is None
                                   and self.selected_candidate() is not None)

    def selected_candidate(self) -> int | None:
        """The index (in the result's candidates) of the selected pose, or None."""
        item = self.candidates.currentItem()
        return None if item is None or not item.isSelected() else item.data(Qt.ItemDataRole.UserRole)

    def _offer_alternative(self) -> None:
        """Show the one-click alternative while a flagged result with an alternative pose is shown; usable when idle."""
        verdict = self.result.verdict if self.result is not None else None
        offer = verdict is not None and verdict.flagged and verdict.alternative is not None
        if offer:  # the pose the verdict's reason names, in its words
            self.alternative_button.setText(f"Try {verdict.alternative_label or 'the alternative pose'}")
        self.alternative_button.setVisible(offer)
        self.alternative_button.setEnabled(offer and self.worker is None)

    def _show_candidates(self) -> None:
        """The pose candidates, best score first (a pose without a score last); each item keeps its index."""
        self.candidates.clear()
        poses = self.result.candidates
        for index in sorted(range(len(poses)), key=lambda i: -poses[i].score if math.isfinite(poses[i].score) else 9):
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, index)
            self.candidates.addItem(item)
        self._mark_shown()

    def _mark_shown(self) -> None:
        """Each candidate's line; ▶ marks the one whose pose is shown now (none after a change by hand elsewhere)."""
        poses = self.result.candidates if self.result is not None else []
        angle, mirrored = transforms.rotation_and_mirror(self.result.matrix) if poses else (0.0, False)
        near = {i: transforms.angle_difference(p.angle_deg, angle) for i, p in enumerate(poses) if p.flipped == mirrored}
        shown = min(near, key=near.get) if near and min(near.values()) <= SAME_POSE_DEG else None
        for row in range(self.candidates.count()):
            item = self.candidates.item(row)
            index = item.data(Qt.ItemDataRole.UserRole)
            pose = poses[index]
            score = f"{pose.score:.3f}" if math.isfinite(pose.score) else "–"
            item.setText(f"{'▶' if index == shown else '  '} {pose.angle_deg:6.1f}°  {'mirrored' if pose.flipped else 'as is'}"
                         f"  score {score}{'  (shown)' if index == shown else ''}")

    def show_summary(self) -> None:
        """Pose, similarity and the engine's verdict headline, with a note when the matrix was changed since."""
        r, v = self.result, self.result.verdict
        angle, mirrored = transforms.rotation_and_mirror(r.matrix)  # of the pose shown, wherever it started
        changed = self.session.adjusted is not None  # the verdict is the registration's, not this pose's: no colour
        style = "" if v is None or changed else " style='color:#f80'" if v.flagged else " style='color:#3c3'"
        headline = (r.headline + (" (Refine from here judges it)" if v is None else "")) if not changed else (
            f"before your change: {r.headline}")
        fit = (f"NCC {r.ncc_before:.2f} → {r.ncc_after:.2f}, tissue overlap {r.tissue_overlap:.2f}"
               if math.isfinite(r.ncc_after) else "NCC and tissue overlap not measured")
        self.summary.setText(f"Rotation {angle:.1f}°, {'mirrored' if mirrored else 'not mirrored'}<br>{fit}<br>"
                             f"<b{style}>{headline}</b>{NOTES.get(self.session.adjusted, '')}")
        self.summary.setMinimumHeight(self.summary.sizeHint().height())  # keep all lines in a crowded dock

    def _clear(self) -> None:
        """Nothing shown: the result's controls off, the views and the correction keys gone."""
        self.inspect.clear()
        self.correct.unbind_keys()
        self.candidates.clear()
        self.summary.setText("")
        self.progress.setValue(0)
        self.table.show_message("Reset: layers are as they were.")
        self._set_result_enabled(False)


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row
