"""Fixed/moving image and landmark pickers shared by the Register and the Fine-tune widgets."""
from __future__ import annotations

from collections.abc import Callable

from napari.layers import Image, Points
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout

from ..errors import InputError
from ..plugin.landmark_layers import IMAGE
from ..plugin.session import same_layer
from .common import LayerCombo

NONE = "(none)"


class LayerPairPicker:
    """Four combo boxes kept in sync with the viewer's layers, and the checks of what they pick.

    Image pickers list every layer (a wrong type is refused with a message, not hidden);
    landmark pickers list Points layers, and pick the landmarks paired with the picked image (a landmark file
    opened through the dock names its image) over any other. ``hidden`` leaves out layers the widget made itself.
    """

    def __init__(self, viewer, hidden: Callable[[object], bool] = lambda layer: False):
        self.viewer = viewer
        self._hidden = hidden
        self.fixed_combo, self.moving_combo = LayerCombo(), LayerCombo()
        self.fixed_points_combo, self.moving_points_combo = LayerCombo(), LayerCombo()
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh)
        self._auto_picked: set = set()  # (landmark picker, image, landmarks) picked once for the user already
        for combo in (self.fixed_combo, self.moving_combo):
            combo.currentTextChanged.connect(lambda _: self._pick_paired())
        self.refresh()

    def add_rows(self, form: QFormLayout) -> None:
        form.addRow("Fixed image", self.fixed_combo)
        form.addRow("Moving image", self.moving_combo)
        form.addRow("Fixed landmarks", self.fixed_points_combo)
        form.addRow("Moving landmarks", self.moving_points_combo)

    def refresh(self, event=None) -> None:
        """Update the choices (keeping the current ones) after layers were added, removed or renamed."""
        if event is not None and event.type == "inserted":
            event.value.events.name.connect(self.refresh)
        layers = [ly for ly in self.viewer.layers if not self._hidden(ly)]
        image_names = [ly.name for ly in layers if isinstance(ly, Image)]
        images = image_names + [ly.name for ly in layers if not isinstance(ly, Image)]
        points = [NONE] + [ly.name for ly in layers if isinstance(ly, Points)]
        _fill(self.fixed_combo, images, image_names[0] if image_names else None)
        # moving defaults to the newest image that is not the fixed one, and never stays on the fixed
        # one while another image exists (else opening two images one after the other picks one twice)
        others = [n for n in image_names if n != self.fixed_combo.currentText()]
        _fill(self.moving_combo, images, others[-1] if others else None)
        if others and self.moving_combo.currentText() == self.fixed_combo.currentText():
            self.moving_combo.setCurrentText(others[-1])
        _fill(self.fixed_points_combo, points, next((n for n in points if "fixed" in n.lower()), NONE))
        _fill(self.moving_points_combo, points, next((n for n in points if "moving" in n.lower()), NONE))
        self._pick_paired()

    def _pick_paired(self) -> None:
        """Each landmark picker picks the landmarks paired with its picked image, once per image and landmark
        layer (a later choice by hand stays)."""
        for combo, image in ((self.fixed_points_combo, self.fixed_combo), (self.moving_points_combo, self.moving_combo)):
            paired = [ly.name for ly in self.viewer.layers
                      if isinstance(ly, Points) and ly.metadata.get(IMAGE) == image.currentText()]
            key = (combo is self.fixed_points_combo, image.currentText(), paired[0] if paired else None)
            if paired and key not in self._auto_picked and combo.findText(paired[0]) >= 0:
                self._auto_picked.add(key)
                combo.setCurrentText(paired[0])

    def _layer(self, combo: QComboBox):
        name = combo.currentText()
        return self.viewer.layers[name] if name and name != NONE and name in self.viewer.layers else None

    def selected(self):
        """``(fixed, moving, fixed points or None, moving points or None)``, checked; raises InputError."""
        fixed, moving = self._layer(self.fixed_combo), self._layer(self.moving_combo)
        if fixed is None or moving is None:
            raise InputError("Pick a fixed and a moving image layer")
        if same_layer(fixed, moving):
            raise InputError(f"Layer '{fixed.name}' is selected as both fixed and moving image: pick two different layers")
        for layer in (fixed, moving):
            if not isinstance(layer, Image):
                raise InputError(f"Layer '{layer.name}' is a {layer.__class__.__name__} layer, not an image layer")
            if layer.ndim != 2:
                raise InputError(f"Image layer '{layer.name}' has {layer.ndim} dimensions (shape "
                                 f"{tuple(layer.data[0].shape if layer.multiscale else layer.data.shape)}): "
                                 "registration needs a single 2-D section (gray or RGB), not a stack")
        fixed_pts, moving_pts = self._layer(self.fixed_points_combo), self._layer(self.moving_points_combo)
        if fixed_pts is not None and same_layer(fixed_pts, moving_pts):
            raise InputError(f"Points layer '{fixed_pts.name}' is selected as both fixed and moving landmarks")
        for pts in (fixed_pts, moving_pts):
            if pts is not None and pts.ndim != 2:
                raise InputError(f"Landmark layer '{pts.name}' is {pts.ndim}-D; landmarks must be 2-D points")
        if fixed_pts is not None and moving_pts is not None and len(fixed_pts.data) != len(moving_pts.data):
            raise InputError(f"Landmark layers differ in length: '{fixed_pts.name}' has {len(fixed_pts.data)} "
                             f"points, '{moving_pts.name}' has {len(moving_pts.data)}")
        return fixed, moving, fixed_pts, moving_pts


def _fill(combo: QComboBox, names: list[str], default) -> None:
    current = combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(names)
    for row, name in enumerate(names):
        combo.setItemData(row, name, Qt.ItemDataRole.ToolTipRole)
    combo.setCurrentIndex(combo.findText(current if current in names else (default or "")))  # -1: nothing fits
    combo.setToolTip(combo.currentText())
    combo.blockSignals(False)
