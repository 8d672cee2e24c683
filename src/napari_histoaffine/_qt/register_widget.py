"""The Register widget: a view of a :class:`~napari_histoaffine.plugin.session.RegistrationSession` plus workers.

It picks two image layers, runs the engine in a worker (progress, Cancel) and shows what the
session holds: the verdict, the pose candidates, the error per landmark, inspection views. The
session changes nothing but the moving layer's ``affine`` and opacity (and those of its landmarks);
Reset puts back exactly what they had.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog

from ..errors import HistoAffineError, InputError
from ..plugin.readers import open_files, unpaired_note
from ..plugin.session import PickedLayers, RegistrationInputs, RegistrationSession, same_layer
from ..registration.options import RegistrationOptions
from ..registration.pipeline import register_steps
from ..registration.weights import default_weights_path
from .common import BUNDLED, DockJobs, steps_worker
from .inspection_controls import OFF
from .layer_pickers import LayerPairPicker
from .register_view import MASKS, RegisterView

KEYS = {"Alt-R": lambda widget: widget.start_registration(),  # viewer key bindings while the dock is open
        "Alt-O": lambda widget: widget.session.toggle_overlay(),
        "Alt-C": lambda widget: widget.toggle_checkerboard()}


@thread_worker
def _warm_engine_up() -> None:
    """A small registration in the background when the first Register dock opens: torch's first calls
    and the shipped weights cost about a second once per process, paid here instead of on the first click."""
    from ..registration.pipeline import register

    section = np.zeros((160, 200))
    section[40:120, 50:150] = 1.0
    section += 0.1 * np.random.default_rng(0).random(section.shape)
    register(section, section)


@cache
def _warm_up_once():
    """Start the warm-up the first time a dock asks; later docks get the same (finished) worker."""
    worker = _warm_engine_up()
    worker.start()
    return worker


class RegisterWidget(RegisterView):
    """Dock widget registering a moving image layer onto a fixed one."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.background = DockJobs(self)  # closing the dock or the viewer stops the run; its result is then dropped
        self.session = RegistrationSession(napari_viewer.layers)
        self.session.events.matrix.connect(self._on_matrix)
        self.session.events.landmarks.connect(self.update_table)
        self.session.events.dropped.connect(self._on_dropped)
        self.pickers = LayerPairPicker(napari_viewer,
                                       hidden=lambda layer: same_layer(layer, self.session.registered_points))
        self._build()
        for key, action in KEYS.items():  # listed in the README; they go with the dock
            napari_viewer.bind_key(key, lambda _, action=action: action(self), overwrite=True)
        self.destroyed.connect(lambda: [napari_viewer.bind_key(key, None) for key in KEYS])
        _warm_up_once()

    @property
    def result(self):
        """The shown registration (the session's), or None."""
        return self.session.result

    # ---------------------------------------------------------------- inputs
    def open_files(self) -> None:
        """Ask for files and open them, slides and landmark files with this plugin's readers; landmarks are paired
        with their image by name where a rule can tell (the pickers then pick them with it), else the user is told."""
        paths, _ = QFileDialog.getOpenFileNames(self, "Open slides, images or ANHIR landmarks")
        try:
            note = unpaired_note(open_files(self.viewer, paths))
        except HistoAffineError as exc:
            return show_error(str(exc))
        self.pickers.refresh()
        if note:
            show_info(note)

    def _model(self):
        if self.model_combo.currentText() == BUNDLED:
            return "default" if default_weights_path() else None
        path = self.weights_edit.text().strip()
        if not path or not Path(path).is_file():
            raise InputError(f"Weights file not found: '{path}'")
        return path

    def _picked_inputs(self) -> tuple[PickedLayers, RegistrationInputs]:
        """The picked layers and what the engine gets from them; raises HistoAffineError."""
        picked = PickedLayers(*self.pickers.selected())
        options = RegistrationOptions(model=self._model(), refine=self.refine_check.isChecked())
        return picked, RegistrationInputs.from_layers(picked, options)

    # ---------------------------------------------------------------- registration
    def start_registration(self) -> None:
        """Validate the inputs, then register in a worker thread (progress per stage; Cancel stops it)."""
        if self.worker is not None:
            return
        try:
            picked, inputs = self._picked_inputs()
        except HistoAffineError as exc:
            show_error(str(exc))
            self.status.setText("Not registered: the input was refused (see the message).")
            return

        def done(result):
            try:
                self.session.show(picked, inputs, result)
            except InputError as exc:
                show_error(str(exc))
                return self.status.setText("Nothing applied: a layer was removed while the registration ran.")
            self._shown(f"Registered in {result.seconds:.1f} s.")

        self._run(inputs, {}, "Registering…", done)

    def apply_saved_transform(self, path) -> None:
        """Show a saved transform (ours, elastix or ITK) of the picked moving layer onto the picked fixed one.

        It has no verdict until *Refine from here* runs the refinement from it.
        """
        if self.worker is not None:
            return
        try:
            picked, inputs = self._picked_inputs()
            self.session.apply_transform_file(path, picked, inputs)
        except HistoAffineError as exc:
            show_error(str(exc))
            return
        self._shown(f"Applied {Path(path).name} (no verdict: Refine from here judges it).")

    def try_candidate(self, index: int | None = None) -> None:
        """Re-run the later stages from another pose candidate (the selected one) and show the outcome."""
        index = self.selected_candidate() if index is None else index
        if index is None:
            show_info("Select a pose in the candidate list first.")
        elif self.result is not None and 0 <= index < len(self.result.candidates):
            self._rerun({"candidate": index}, f"candidate {index}")

    def try_alternative(self) -> None:
        """Re-register from the pose the verdict names as the best alternative (the other mirror state first)."""
        self.try_candidate(self.result.verdict.alternative)

    def refine_from_here(self) -> None:
        """Run the refinement from the pose shown now (after a correction by hand) and show the outcome."""
        if self.result is not None:
            self._rerun({"start": self.result.matrix}, "your pose")

    def _rerun(self, extra: dict, label: str) -> None:
        if self.worker is not None:
            return
        # a result by the largest pieces of tissue lists their poses, and its pose was found on them
        extra = {**extra, "largest_pieces": self.result.largest_pieces}

        def done(result):
            if not self.session.show_rerun(result):
                return self.status.setText("Nothing applied: the registration was dropped while this ran.")
            self._show_candidates()  # the rerun's own list (its index is what Try refers to)
            self.status.setText(f"Registered from {label} in {result.seconds:.1f} s.")

        self._run(self.session.inputs, extra, f"Registering from {label}…", done)

    def _run(self, inputs: RegistrationInputs, extra: dict, message: str, done) -> None:
        """Register ``inputs`` (with ``extra`` engine keywords) in a worker; ``done`` gets the result."""
        self.worker = steps_worker(register_steps(inputs.moving, inputs.fixed, **inputs.keywords(**extra)))
        self.progress.setValue(0)
        self.status.setText(message)
        self._set_running(True)
        self.background.start(self.worker, yielded=self._on_progress, returned=done,
                        aborted=lambda: self._stopped("Cancelled; layers unchanged."),
                        errored=[lambda exc: show_error(f"Registration failed: {exc}"),
                                 lambda _: self._stopped("Registration failed; layers unchanged.")],
                        finished=self._on_finished)

    def cancel(self) -> None:
        """Ask the running registration to stop at its next stage boundary; nothing is applied."""
        if self.worker is not None:
            self.status.setText("Cancelling…")
            self.worker.quit()

    def _on_progress(self, item) -> None:
        self.progress.setValue(round(100 * item.fraction))
        self.status.setText(f"{item.stage}: {item.message}")

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)

    # ---------------------------------------------------------------- showing the session
    def _shown(self, message: str) -> None:
        """A new registration is shown: its pose candidates, the result's buttons, the keys to correct it."""
        self._show_candidates()
        self._set_result_enabled(True)
        self.correct.bind_keys(self.session.picked.moving)
        self.status.setText(message)

    def _on_matrix(self, event=None) -> None:
        self.show_summary()
        self._mark_shown()
        fixed, moving, between, fixed_to_full = self.session.inspection_pair()
        picked = self.session.picked
        self.inspect.show_pair(fixed, moving, between, picked.fixed, fixed_to_full, picked.moving)

    def update_table(self, event=None) -> None:
        """The error per landmark pair (TRE in fixed pixels, rTRE), or why there is none."""
        try:
            self.table.show_errors(*self.session.landmark_errors())
        except InputError as exc:
            self.table.show_message(str(exc))

    def toggle_checkerboard(self) -> None:
        """The checkerboard view on or off (a key binding)."""
        if self.inspect.isEnabled():
            combo = self.inspect.view_combo
            combo.setCurrentText("checkerboard" if combo.currentText() != "checkerboard" else OFF)

    def centre_on_landmark(self, row: int, _column: int = 0) -> None:
        """Select the landmark of a clicked table row in both landmark layers and centre the view on it."""
        picked = self.session.picked
        if picked is None or picked.fixed_points is None or row >= len(picked.fixed_points.data):
            return
        for layer in (picked.fixed_points, picked.moving_points):
            if layer is not None and row < len(layer.data):
                layer.selected_data = {row}
        self.viewer.camera.center = picked.fixed_points.data_to_world(picked.fixed_points.data[row])

    # ---------------------------------------------------------------- by hand
    def refit_from_landmarks(self) -> None:
        """Least-squares affine from the current landmark pairs replaces the automatic matrix."""
        try:
            self.session.refit_from_landmarks()
        except HistoAffineError as exc:
            show_error(str(exc))

    def toggle_masks(self) -> None:
        """The tissue masks the registration used, as Labels layers over their images; a second click hides them."""
        try:
            self.session.remove_masks() if self.session.mask_layers else self.session.show_masks()
        except HistoAffineError as exc:
            show_error(str(exc))
        self.masks_button.setText(MASKS[bool(self.session.mask_layers)])

    def reset(self) -> None:
        """Undo: every changed layer gets back its original affine and opacity; the widget's layers go."""
        self.session.reset()
        self._clear()
        self.status.setText("Reset: layers are as they were.")

    def _on_dropped(self, event) -> None:
        self._clear()
        self.status.setText(f"Layer '{event.value}' was removed: its registration was dropped.")


class RegisterWidgetWithSample(RegisterWidget):
    """The Register widget after loading the "histology pair" sample (the README's one-command demo)."""

    def __init__(self, napari_viewer):
        napari_viewer.open_sample("napari-histoaffine", "histology_pair")
        super().__init__(napari_viewer)
