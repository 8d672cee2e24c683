"""The Register widget's inspection views: one extra layer over the registered pair, removed by Reset."""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QSlider

from .. import transforms
from ..plugin import inspection
from ..plugin.layer_transforms import data_to_world_matrix

OFF = "off (overlay)"


class InspectionControls(QGroupBox):
    """A view menu and a slider (checkerboard tile size, swipe position) for the registered pair.

    The view is one Image layer on the fixed layer's grid, computed from the arrays the registration
    used (a few hundred pixels across, so updates are instant); the user's layers are not touched.
    """

    def __init__(self, viewer):
        super().__init__("Inspect")
        self.viewer = viewer
        self.layer = None
        self._pair = None  # (fixed array, moving array, matrix between them, world affine of the fixed array's grid)
        self._warped = None  # the moving array on the fixed grid, made when a view first needs it
        self.view_combo = QComboBox()
        self.view_combo.addItems([OFF, *inspection.VIEWS])
        self.view_combo.currentTextChanged.connect(lambda _: self.update_view())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(1, 100)
        self.slider.setValue(50)
        self.slider.valueChanged.connect(lambda _: self.update_view())
        self.value_label = QLabel()  # what the slider sets, in the view's own terms
        self.value_label.setMinimumWidth(self.value_label.fontMetrics().horizontalAdvance("tiles 9999 px"))
        slider_row = QHBoxLayout()
        slider_row.addWidget(self.slider)
        slider_row.addWidget(self.value_label)
        form = QFormLayout(self)
        form.addRow("View", self.view_combo)
        form.addRow("Tile / curtain", slider_row)
        self._show_value()
        self.setEnabled(False)

    def show_pair(self, fixed: np.ndarray, moving: np.ndarray, matrix: np.ndarray, fixed_layer, fixed_to_full) -> None:
        """Make views of a registration: arrays as registered, ``matrix`` between them (moving → fixed pixels),
        ``fixed_to_full`` from the fixed array's pixels to the fixed layer's data pixels. The moving array is
        warped only when a view is shown (a nudge by hand calls this on every key press)."""
        affine = data_to_world_matrix(fixed_layer) @ transforms.xy_to_rowcol(fixed_to_full)
        self._pair = (fixed, moving, matrix, affine)
        self._warped = None
        self.setEnabled(True)
        self.update_view()

    def _tile(self) -> int | None:
        """The checkerboard's tile size in pixels of the registered arrays: up to a quarter of the image."""
        return None if self._pair is None else max(4, round(self.slider.value() / 100 * max(self._pair[0].shape[:2]) / 4))

    def _show_value(self) -> None:
        name, value = self.view_combo.currentText(), self.slider.value()
        tile = self._tile()
        self.value_label.setText(f"tiles {tile} px" if name == "checkerboard" and tile else
                                 f"curtain {value} %" if name == "swipe" else f"{value} %")

    def update_view(self) -> None:
        self._show_value()
        name = self.view_combo.currentText()
        if self._pair is None or name == OFF:
            return self._remove_layer()
        fixed, moving, matrix, affine = self._pair
        if self._warped is None:
            self._warped = inspection.warped_onto_fixed(moving, fixed.shape, matrix)
        tile = self._tile()
        data = inspection.view(name, fixed, self._warped, tile if name == "checkerboard" else self.slider.value() / 100)
        title = f"inspection: {name}"
        if self.layer is not None and self.layer in self.viewer.layers and self.layer.rgb == (data.ndim == 3):
            self.layer.data, self.layer.name = data, title
        else:
            self._remove_layer()
            self.layer = self.viewer.add_image(data, name=title, affine=affine, rgb=data.ndim == 3,
                                               contrast_limits=(0.0, 1.0))

    def clear(self) -> None:
        """Forget the pair and remove the view (Reset)."""
        self._pair = self._warped = None
        self.view_combo.setCurrentText(OFF)
        self._remove_layer()
        self.setEnabled(False)

    def _remove_layer(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None
