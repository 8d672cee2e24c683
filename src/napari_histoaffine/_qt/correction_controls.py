"""Correction by hand in the Register widget: flip, turn or nudge the registered section, then refine from there."""
from __future__ import annotations

from qtpy.QtWidgets import QGridLayout, QGroupBox, QPushButton

from .. import transforms

NUDGE = 0.005  # of the fixed image's diagonal, per arrow key
KEYS = {"Up": (0, -1), "Down": (0, 1), "Left": (-1, 0), "Right": (1, 0)}


class CorrectionControls(QGroupBox):
    """Buttons (and, on the registered moving layer, arrow keys) that change the registration by hand.

    Every change turns or shifts the moving section about its own centre in the fixed image:
    *Flip* mirrors it left–right, the turn buttons turn it by 90°, arrow keys shift it by 0.5 % of
    the fixed image's diagonal and Shift+Left/Right turn it by 1°. *Refine from here* runs the
    refinement from the pose as it is now. ``register`` is the Register widget the changes apply to.
    """

    def __init__(self, register):
        super().__init__("Correct by hand")
        self.register = register
        self._keyed = None  # the moving layer whose keys are bound
        grid = QGridLayout(self)
        buttons = (("Flip", "Mirror the moving section left–right about its centre",
                    lambda: self.change(transforms.mirror_x())),
                   ("Turn ⟲ 90°", "Turn the moving section by 90° about its centre (Shift+arrows: 1°)",
                    lambda: self.change(transforms.rotation(90.0))),
                   ("Turn ⟳ 90°", "Turn the moving section by −90° about its centre (arrow keys: shift it)",
                    lambda: self.change(transforms.rotation(-90.0))),
                   ("Refine from here", "Run the refinement from the pose as it is now",
                    lambda: register.refine_from_here()))
        for i, (text, tip, slot) in enumerate(buttons):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            grid.addWidget(button, i // 2, i % 2)
        self.setEnabled(False)

    def change(self, about_centre) -> None:
        """Apply a change made about the moved section's centre (in fixed pixels) after the current matrix (not while a
        registration runs: its result would replace the change)."""
        if self.register.result is not None and self.register.worker is None:
            self.register.session.correct(about_centre)

    def bind_keys(self, moving_layer) -> None:
        """Arrow keys nudge and Shift+Left/Right turn by 1° while ``moving_layer`` is the active layer."""
        self.unbind_keys()
        step = NUDGE * float(sum(v * v for v in self.register.result.fixed_shape) ** 0.5)
        for key, (dx, dy) in KEYS.items():
            shift = transforms.translation(dx * step, dy * step)
            moving_layer.bind_key(key, lambda _, shift=shift: self.change(shift), overwrite=True)
        for key, degrees in (("Shift-Left", 1.0), ("Shift-Right", -1.0)):
            turn = transforms.rotation(degrees)
            moving_layer.bind_key(key, lambda _, turn=turn: self.change(turn), overwrite=True)
        self._keyed = moving_layer
        self.setEnabled(self.register.worker is None)

    def set_idle(self, idle: bool) -> None:
        """Usable only while no registration runs (and one is shown): a change meanwhile would do nothing."""
        self.setEnabled(idle and self._keyed is not None)

    def unbind_keys(self) -> None:
        if self._keyed is not None:
            for key in (*KEYS, "Shift-Left", "Shift-Right"):
                self._keyed.bind_key(key, None)
        self._keyed = None
        self.setEnabled(False)
