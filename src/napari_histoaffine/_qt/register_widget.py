"""The Register widget: pick two image layers, register in a worker, inspect, correct, export.

The user's layers are never modified in place: registering only sets the moving layer's
``affine`` (and its opacity for the overlay); Reset puts back exactly what it had. Mapped
landmarks go into a new Points layer.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from napari.layers import Points
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import transforms
from ..errors import HistoAffineError, InputError
from ..evaluation.metrics import image_diagonal, tre
from ..files.atomic import atomic_write, write_json
from ..files.tables import write_landmarks
from ..files.transform_files import elastix_affine_text, itk_tfm_text, read_transform_file
from ..plugin.layer_transforms import (
    data_to_world_matrix,
    fit_affine,
    layer_matrices,
    moving_layer_affine,
    pair_arrays,
    points_between,
    rowcol_to_xy,
)
from ..registration.options import RegistrationOptions
from ..registration.pipeline import register_steps
from ..registration.preprocess import DEFAULT_WORKING_SIZE
from ..registration.results import RegistrationResult
from ..registration.weights import default_weights_path
from ..warp import warp_to_ome_tiff
from .common import BUNDLED, OVERLAY_OPACITY, WEIGHTS_FILE, browse_weights, make_button, scrolled_layout
from .correction_controls import CorrectionControls
from .inspection_controls import OFF, InspectionControls
from .landmark_table import LandmarkTable
from .layer_pickers import LayerPairPicker, same_layer

KEYS = {"Alt-R": lambda widget: widget.start_registration(),  # viewer key bindings while the dock is open
        "Alt-O": lambda widget: widget.toggle_overlay(),
        "Alt-C": lambda widget: widget.toggle_checkerboard()}


@thread_worker
def _register_worker(moving, fixed, options):
    """Generator worker: yields the pipeline's Progress items, returns its RegistrationResult."""
    return (yield from register_steps(moving, fixed, **options))


class RegisterWidget(QWidget):
    """Dock widget registering a moving image layer onto a fixed one."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.result = None
        self._inputs = None  # arrays and options of the last registration, for "try this pose"
        self._layers = None  # (fixed image, moving image, fixed points or None, moving points or None)
        self._moving_world0 = None  # moving image data → world before registration
        self._saved: dict = {}  # layer.unique_id → (layer, affine, opacity) before the first change
        self.registered_points: Points | None = None
        self.mask_layers: list = []
        self._connections: list[tuple] = []
        self.pickers = LayerPairPicker(napari_viewer, hidden=lambda layer: same_layer(layer, self.registered_points))
        self._build()
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        for key, action in KEYS.items():  # listed in the README; they go with the dock
            napari_viewer.bind_key(key, lambda _, action=action: action(self), overwrite=True)
        self.destroyed.connect(lambda: [napari_viewer.bind_key(key, None) for key in KEYS])

    # ---------------------------------------------------------------- layout
    def _build(self) -> None:
        self.model_combo = QComboBox()
        self.model_combo.addItems([BUNDLED, WEIGHTS_FILE])
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("path to .safetensors weights")
        browse = make_button("…", lambda: browse_weights(self, self.weights_edit, self.model_combo))
        self.model_note = QLabel("" if default_weights_path() else "No network bundled yet: the default runs pose "
                                 "search + refinement only.")
        self.model_note.setWordWrap(True)
        self.refine_check = QCheckBox("refinement")
        self.refine_check.setChecked(True)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit)
        weights_row.addWidget(browse)

        form = QFormLayout()
        self.pickers.add_rows(form)
        form.addRow("Model", self.model_combo)
        form.addRow("", weights_row)
        form.addRow("", self.model_note)
        form.addRow("", self.refine_check)

        self.register_button, self.cancel_button = QPushButton("Register"), QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.register_button.clicked.connect(self.start_registration)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("Pick two image layers and click Register.")
        self.status.setWordWrap(True)

        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.alternative_button = make_button("Try alternative pose", self.try_alternative)
        self.candidates = QListWidget()
        self.candidates.setMaximumHeight(90)
        self.candidates.itemDoubleClicked.connect(lambda _: self.try_candidate())
        self.try_button = make_button("Try selected pose", lambda: self.try_candidate())
        self.overlay_button = make_button("Toggle overlay", self.toggle_overlay)
        self.masks_button = make_button("Show tissue masks", self.show_masks)
        self.refit_button = make_button("Refit from landmarks", self.refit_from_landmarks)
        self.reset_button = make_button("Reset", self.reset)
        self.export_transform_button = make_button("Export transform…", self._ask_export_transform)
        self.import_transform_button = make_button("Apply saved transform…", self._ask_apply_transform)
        self.export_points_button = make_button("Export landmarks…", self._ask_export_landmarks)
        self.export_slide_button = make_button("Export warped slide…", self._ask_export_slide)
        self.table = LandmarkTable()
        self.table.table.cellClicked.connect(self.centre_on_landmark)
        self.summary.setToolTip("NCC: normalised cross-correlation of the tissue structure before → after (1 is a "
                                "perfect match; it differs between stains, so compare it within a pair).\n"
                                "Confidence: how clearly this pose beats every different pose tried on this pair "
                                "(the mirror image, other turns); flagged below 50 %.")
        self.candidates.setToolTip("Poses the rotation/mirror search found, best first (score: its structure NCC at "
                                   "low resolution). Try one to re-run the later stages from it.")

        result_box = QGroupBox("Result")
        box = QVBoxLayout(result_box)
        box.addWidget(self.summary)
        box.addWidget(self.alternative_button)
        box.addWidget(QLabel("Pose candidates (angle, mirror, score):"))
        box.addWidget(self.candidates)
        for row in ((self.try_button, self.overlay_button), (self.masks_button, self.refit_button), (self.reset_button,),
                    (self.export_transform_button, self.export_points_button),
                    (self.export_slide_button, self.import_transform_button)):
            line = QHBoxLayout()
            for button in row:
                line.addWidget(button)
            box.addLayout(line)
        box.addWidget(self.table)

        buttons = QHBoxLayout()
        buttons.addWidget(self.register_button)
        buttons.addWidget(self.cancel_button)
        layout = scrolled_layout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(result_box)
        self.correct = CorrectionControls(self)
        layout.addWidget(self.correct)
        self.inspect = InspectionControls(self.viewer)
        layout.addWidget(self.inspect)
        self._set_result_enabled(False)

    def _set_result_enabled(self, enabled: bool) -> None:
        for w in (self.try_button, self.overlay_button, self.refit_button, self.export_transform_button,
                  self.export_points_button, self.export_slide_button):
            w.setEnabled(enabled)
        self.masks_button.setEnabled(enabled and self.result is not None and self.result.masks is not None)
        self._offer_alternative()

    def _offer_alternative(self) -> None:
        """Show the one-click alternative while a flagged result with an alternative pose is shown; usable when idle."""
        verdict = self.result.verdict if self.result is not None else None
        offer = verdict is not None and verdict.flagged and verdict.alternative is not None
        if offer:
            pose = self.result.candidates[verdict.alternative]
            self.alternative_button.setText("Try the other mirror state" if pose.flipped != self.result.flipped
                                            else f"Try alternative pose ({pose.angle_deg:.0f}°)")
        self.alternative_button.setVisible(offer)
        self.alternative_button.setEnabled(offer and self.worker is None)

    # ---------------------------------------------------------------- inputs
    def _model(self):
        if self.model_combo.currentText() == BUNDLED:
            return "default" if default_weights_path() else None
        path = self.weights_edit.text().strip()
        if not path or not Path(path).is_file():
            raise InputError(f"Weights file not found: '{path}'")
        return path

    # ---------------------------------------------------------------- registration
    def _picked_inputs(self):
        """The picked layers, and the arrays (at one pixel size) and options the engine gets; raises HistoAffineError."""
        layers = self.pickers.selected()
        (fixed, fixed_full), (moving, moving_full) = pair_arrays(layers[:2], DEFAULT_WORKING_SIZE)
        options = {"options": RegistrationOptions(model=self._model(), refine=self.refine_check.isChecked()),
                   "moving_full_shape": moving_full, "fixed_full_shape": fixed_full}
        return layers, (moving, fixed, options)

    def start_registration(self) -> None:
        """Validate the inputs, then register in a worker thread (progress per stage; Cancel stops it)."""
        if self.worker is not None:
            return
        try:
            layers, (moving, fixed, options) = self._picked_inputs()
        except HistoAffineError as exc:
            show_error(str(exc))
            self.status.setText("Not registered: the input was refused (see the message).")
            return
        self._pending = (layers, (moving, fixed, options))
        self.worker = _register_worker(moving, fixed, options)
        self.worker.yielded.connect(self._on_progress)
        self.worker.returned.connect(self._on_registered)
        self.worker.aborted.connect(lambda: self.status.setText("Cancelled; layers unchanged."))
        self._start(self.worker, "Registering…")

    def _start(self, worker, message: str) -> None:
        worker.errored.connect(lambda exc: show_error(f"Registration failed: {exc}"))
        worker.finished.connect(self._on_finished)
        self.progress.setValue(0)
        self.status.setText(message)
        self.register_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.alternative_button.setEnabled(False)
        worker.start()

    def cancel(self) -> None:
        """Ask the running registration to stop at its next stage boundary; nothing is applied."""
        if self.worker is not None and hasattr(self.worker, "aborted"):
            self.status.setText("Cancelling…")
            self.worker.quit()

    def _on_progress(self, item) -> None:
        self.progress.setValue(round(100 * item.fraction))
        self.status.setText(f"{item.stage}: {item.message}")

    def _on_finished(self) -> None:
        self.worker = None
        self.register_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self._offer_alternative()

    def _on_registered(self, result) -> None:
        layers, self._inputs = self._pending
        if any(ly is not None and ly not in self.viewer.layers for ly in layers):
            show_error("A layer of this registration was removed while it ran; nothing was applied")
            self.status.setText("Nothing applied: a layer was removed while the registration ran.")
            return
        self._show_result(layers, result, f"Registered in {result.seconds:.1f} s.")

    def _show_result(self, layers, result, message: str) -> None:
        """Make ``result`` the shown registration of ``layers`` (fixed, moving and their landmarks)."""
        self._use_layers(*layers)
        self.result = result
        self.candidates.clear()
        self.candidates.addItems([f"{p.angle_deg:6.1f}°  {'mirrored' if p.flipped else 'as is'}  score {p.score:.3f}"
                                  for p in result.candidates])
        self.apply_matrix(result.matrix)
        self._set_result_enabled(True)
        self.correct.bind_keys(layers[1])
        self.status.setText(message)

    def apply_saved_transform(self, path) -> None:
        """Show a saved transform (ours, elastix or ITK) of the picked moving layer onto the picked fixed one.

        It has no verdict until *Refine from here* runs the refinement from it.
        """
        if self.worker is not None:
            return
        try:
            matrix = read_transform_file(path)
            layers, self._inputs = self._picked_inputs()
        except HistoAffineError as exc:
            show_error(str(exc))
            return
        options = self._inputs[2]
        angle, mirrored = transforms.rotation_and_mirror(matrix)
        result = RegistrationResult(matrix, options["moving_full_shape"], options["fixed_full_shape"], ["imported"], {},
                                    float("nan"), float("nan"), angle, mirrored, [], tissue_overlap=float("nan"))
        self._show_result(layers, result, f"Applied {Path(path).name} (no verdict: Refine from here judges it).")

    def _use_layers(self, fixed, moving, fixed_pts, moving_pts) -> None:
        """Remember the registered layers and follow edits of their landmarks."""
        self._disconnect()
        key = moving.unique_id
        if key not in self._saved:
            self._saved[key] = (moving, np.array(moving.affine.affine_matrix), moving.opacity)
        own, _ = layer_matrices(moving)
        self._moving_world0 = self._saved[key][1] @ own
        self._layers = (fixed, moving, fixed_pts, moving_pts)
        if moving_pts is not None:  # the moving landmarks follow their image while it is registered
            self._saved.setdefault(moving_pts.unique_id, (moving_pts, np.array(moving_pts.affine.affine_matrix),
                                                          moving_pts.opacity))
        if fixed_pts is not None:
            self._connect(fixed_pts.events.data, self.update_table)
        if moving_pts is not None:
            self._connect(moving_pts.events.data, self._update_registered_points)

    def _world0(self, layer) -> np.ndarray:
        """A layer's data → world matrix as it was before this widget changed its affine."""
        saved = self._saved.get(layer.unique_id)
        affine = saved[1] if saved is not None else np.asarray(layer.affine.affine_matrix)
        return affine @ layer_matrices(layer)[0]

    def _disconnect(self) -> None:
        for emitter, callback in self._connections:
            emitter.disconnect(callback)
        self._connections = []

    def _connect(self, emitter, callback) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    # ---------------------------------------------------------------- showing a transform
    def apply_matrix(self, matrix) -> None:
        """Show ``matrix`` (moving → fixed full-resolution pixels, ``(x, y)``) via the moving layer's affine."""
        fixed, moving, _, moving_pts = self._layers
        self.result = replace(self.result, matrix=np.asarray(matrix, float))
        own, _ = layer_matrices(moving)
        moving.affine = moving_layer_affine(matrix, data_to_world_matrix(fixed), own)
        moving.opacity = OVERLAY_OPACITY
        if moving_pts is not None:  # through the moving image's data, as the image goes
            points_to_moving_data = np.linalg.inv(self._moving_world0) @ self._world0(moving_pts)
            moving_pts.affine = (data_to_world_matrix(fixed) @ transforms.xy_to_rowcol(matrix) @ points_to_moving_data
                                 @ np.linalg.inv(layer_matrices(moving_pts)[0]))
        self.show_summary()
        self._update_registered_points()
        moving_array, fixed_array, options = self._inputs
        fixed_to_full = transforms.resample_matrix(fixed_array.shape, options["fixed_full_shape"])
        between_arrays = transforms.compose(transforms.resample_matrix(moving_array.shape, options["moving_full_shape"]),
                                            matrix, transforms.invert(fixed_to_full))
        self.inspect.show_pair(fixed_array, moving_array, between_arrays, fixed, fixed_to_full)

    def show_summary(self, note: str = "") -> None:
        r = self.result
        v = r.verdict
        percent = f"{100 * v.confidence:.0f} %" if v is not None else ""
        flag = ("<b>no verdict: a transform set from outside (Refine from here judges it)</b>" if v is None else
                f"<b style='color:#f80'>check this result ({percent}): {v.reason}</b>" if v.flagged
                else f"<b style='color:#3c3'>confident ({percent})</b>")
        self.summary.setText(f"Rotation {r.rotation_deg:.1f}°, {'mirrored' if r.flipped else 'not mirrored'}<br>"
                             f"NCC {r.ncc_before:.2f} → {r.ncc_after:.2f}, tissue overlap {r.tissue_overlap:.2f}<br>"
                             f"{flag}{note}")
        self.summary.setMinimumHeight(self.summary.sizeHint().height())  # keep all lines in a crowded dock

    def _moving_landmarks_fixed_px(self) -> np.ndarray | None:
        """Moving landmarks mapped by the current matrix into fixed image pixels ``(x, y)``."""
        moving_pts = self._layers[3]
        if moving_pts is None:
            return None
        in_moving = points_between(moving_pts.data, self._world0(moving_pts), self._moving_world0)
        return transforms.apply_to_points(self.result.matrix, rowcol_to_xy(in_moving))

    def _update_registered_points(self, event=None) -> None:
        """(Re)build the "(registered)" Points layer: moving landmarks in fixed space, on the fixed layer's grid."""
        mapped = self._moving_landmarks_fixed_px()
        if mapped is None:
            return self.update_table()
        fixed, _, _, moving_pts = self._layers
        data = rowcol_to_xy(mapped)
        layer = self.registered_points
        if layer is None or layer not in self.viewer.layers:
            own, extra = layer_matrices(fixed)
            layer = self.viewer.add_points(
                data, name=f"{moving_pts.name} (registered)", size=moving_pts.size.mean() if len(moving_pts.data) else 12,
                face_color="magenta", border_color="white", symbol="cross", affine=extra @ own)
            self.registered_points = layer
            layer.events.data.connect(self.update_table)
        else:
            layer.data = data
        self.update_table()

    def update_table(self, event=None) -> None:
        """Recompute TRE (fixed pixels) and rTRE (/ fixed image diagonal) of every landmark pair."""
        if self._layers is None:
            return
        fixed, _, fixed_pts, _ = self._layers
        reg = self.registered_points
        if fixed_pts is None or reg is None or reg not in self.viewer.layers:
            return self.table.show_message("Choose fixed and moving landmark layers to see the error per landmark.")
        to_fixed = data_to_world_matrix(fixed)
        target = points_between(fixed_pts.data, data_to_world_matrix(fixed_pts), to_fixed)
        moved = points_between(reg.data, data_to_world_matrix(reg), to_fixed)
        try:
            errors = tre(moved, target)
        except InputError as exc:
            return self.table.show_message(f"No error shown: {exc}.")
        ids = fixed_pts.features["index"] if "index" in fixed_pts.features else None  # the canvas labels' numbers
        self.table.show_errors(errors, image_diagonal(self.result.fixed_shape), ids)

    def toggle_overlay(self) -> None:
        """One-click comparison: moving layer half transparent over the fixed one, or opaque."""
        if self._layers is None:
            return
        moving = self._layers[1]
        moving.opacity = 1.0 if moving.opacity < 1.0 else OVERLAY_OPACITY

    def toggle_checkerboard(self) -> None:
        """The checkerboard view on or off (a key binding)."""
        if self.inspect.isEnabled():
            combo = self.inspect.view_combo
            combo.setCurrentText("checkerboard" if combo.currentText() != "checkerboard" else OFF)

    def centre_on_landmark(self, row: int, _column: int = 0) -> None:
        """Select the landmark of a clicked table row in both landmark layers and centre the view on it."""
        if self._layers is None or self._layers[2] is None or row >= len(self._layers[2].data):
            return
        _, _, fixed_pts, moving_pts = self._layers
        for layer in (fixed_pts, moving_pts):
            if layer is not None and row < len(layer.data):
                layer.selected_data = {row}
        self.viewer.camera.center = fixed_pts.data_to_world(fixed_pts.data[row])

    def show_masks(self) -> None:
        """The tissue masks the registration used, as Labels layers over their images (fixed 1, moving 2)."""
        self._remove_masks()
        fixed, moving, _, _ = self._layers
        masks = self.result.masks
        for layer, mask, to_full, label in ((fixed, masks.fixed, masks.fixed_to_full, 1),
                                            (moving, masks.moving, masks.moving_to_full, 2)):
            affine = data_to_world_matrix(layer) @ transforms.xy_to_rowcol(to_full)
            self.mask_layers.append(self.viewer.add_labels(mask.astype(np.uint8) * label, affine=affine, opacity=0.35,
                                                           name=f"{layer.name} tissue mask"))

    def _remove_masks(self) -> None:
        for layer in self.mask_layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.mask_layers = []

    def reset(self) -> None:
        """Undo: every moving layer gets back its original affine and opacity; the mapped landmarks go."""
        for layer, affine, opacity in self._saved.values():
            layer.affine = affine
            layer.opacity = opacity
        self._saved.clear()
        self._disconnect()
        if self.registered_points is not None and self.registered_points in self.viewer.layers:
            self.viewer.layers.remove(self.registered_points)
        self.registered_points = None
        self._remove_masks()
        self.inspect.clear()
        self.correct.unbind_keys()
        self.result = self._layers = None
        self.candidates.clear()
        self.summary.setText("")
        self.table.show_message("Reset: layers are as they were.")
        self.status.setText("Reset: layers are as they were.")
        self._set_result_enabled(False)

    def _on_layer_removed(self, event) -> None:
        """A registered image layer that goes takes the result with it (the others are restored)."""
        if self._layers is not None and any(same_layer(event.value, ly) for ly in self._layers[:2]):
            self.reset()
            self.status.setText(f"Layer '{event.value.name}' was removed: its registration was dropped.")

    # ---------------------------------------------------------------- corrections
    def try_candidate(self, index: int | None = None) -> None:
        """Re-run the later stages from another pose candidate (the selected one) and show the outcome."""
        index = self.candidates.currentRow() if index is None else index
        if self.result is not None and 0 <= index < len(self.result.candidates):
            self._rerun({"candidate": index}, f"candidate {index}")

    def refine_from_here(self) -> None:
        """Run the refinement from the pose shown now (after a correction by hand) and show the outcome."""
        if self.result is not None:
            self._rerun({"start": self.result.matrix}, "your pose")

    def _rerun(self, extra: dict, label: str) -> None:
        if self.worker is not None:
            return
        moving, fixed, options = self._inputs
        self.worker = _register_worker(moving, fixed, {**options, **extra})
        self.worker.yielded.connect(self._on_progress)

        def done(result):
            if self.result is None:  # a registered layer went (or Reset) while this ran
                self.status.setText("Nothing applied: the registration was dropped while this ran.")
                return
            self.result = result
            self.apply_matrix(result.matrix)
            self.status.setText(f"Registered from {label} in {result.seconds:.1f} s.")

        self.worker.returned.connect(done)
        self._start(self.worker, f"Registering from {label}…")

    def try_alternative(self) -> None:
        """Re-register from the pose the verdict names as the best alternative (the other mirror state first)."""
        self.try_candidate(self.result.verdict.alternative)

    def refit_from_landmarks(self) -> None:
        """Least-squares affine from the current landmark pairs replaces the automatic matrix."""
        try:
            fixed, _, fixed_pts, moving_pts = self._layers
            if fixed_pts is None or moving_pts is None:
                raise InputError("Refit needs both a fixed and a moving landmark layer")
            target = points_between(fixed_pts.data, data_to_world_matrix(fixed_pts), data_to_world_matrix(fixed))
            source = points_between(moving_pts.data, self._world0(moving_pts), self._moving_world0)
            matrix = fit_affine(rowcol_to_xy(source), rowcol_to_xy(target))
        except HistoAffineError as exc:
            show_error(str(exc))
            return
        self.apply_matrix(matrix)
        self.show_summary(" (matrix refitted from landmarks; NCC and verdict are the automatic result's)")

    # ---------------------------------------------------------------- export
    def export_transform(self, path) -> None:
        """Write the transform: ``.json`` as the CLI does, ``.tfm`` for ITK, anything else as elastix parameters."""
        suffix = Path(path).suffix.lower()
        if suffix == ".json":
            write_json(path, self.result.to_dict())
            return
        text = itk_tfm_text(self.result.matrix) if suffix == ".tfm" else elastix_affine_text(
            self.result.matrix, self.result.fixed_shape)
        with atomic_write(path) as f:
            f.write(text)

    def export_landmarks(self, path) -> None:
        """Write the mapped moving landmarks (fixed image pixels) as an ANHIR CSV."""
        mapped = self._moving_landmarks_fixed_px()
        if mapped is None:
            raise InputError("No moving landmark layer was registered")
        write_landmarks(path, mapped)

    def _ask_export_transform(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export transform", "transform.json",
                                              "JSON (*.json);;elastix parameters (*.txt);;ITK transform (*.tfm)")
        self._export(self.export_transform, path)

    def _ask_apply_transform(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Apply a saved transform", "",
                                              "Transforms (*.json *.txt *.tfm);;All files (*)")
        if path:
            self.apply_saved_transform(path)

    def _ask_export_landmarks(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export mapped landmarks", "registered_landmarks.csv", "CSV (*.csv)")
        self._export(self.export_landmarks, path)

    def export_slide(self, path):
        """Warp the moving layer's file at full resolution onto the fixed grid as a pyramidal OME-TIFF (a worker)."""
        
        source = getattr(self._layers[1].source, "path", None)
        if not source or not Path(source).is_file():
            raise InputError(f"Layer '{self._layers[1].name}' has no file on disk to warp at full resolution")
        worker = thread_worker(warp_to_ome_tiff)(source, self.result.matrix, self.result.fixed_shape, path)
        worker.returned.connect(lambda _: show_info(f"Saved {path}"))
        worker.errored.connect(lambda exc: show_error(f"Export failed: {exc}"))
        worker.start()
        return worker

    def _ask_export_slide(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export warped slide", f"{self._layers[1].name}_registered.ome.tif",
                                              "OME-TIFF (*.ome.tif)")
        if not path:
            return
        try:
            self.export_slide(path)
        except (HistoAffineError, OSError) as exc:
            show_error(f"Export failed: {exc}")
            return
        show_info(f"Writing {path} in the background…")

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


class RegisterWidgetWithSample(RegisterWidget):
    """The Register widget after loading the "histology pair" sample (the README's one-command demo)."""

    def __init__(self, napari_viewer):
        napari_viewer.open_sample("napari-histoaffine", "histology_pair")
        super().__init__(napari_viewer)
