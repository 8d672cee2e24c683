"""The Register widget's inspection views: one extra layer over the registered pair, removed by Reset.

The view covers the part of the fixed image in view at about the canvas's resolution (:mod:`..plugin.inspection`
samples both images through the registration, from the pyramid level that fits); it is recomputed in a worker
thread 150 ms after the camera stops moving, a result already overtaken by a newer request is dropped.
"""
from __future__ import annotations

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QSlider

from .. import transforms
from ..plugin import inspection
from ..plugin.layer_transforms import data_to_world_matrix, layer_levels

OFF = "off (overlay)"


class InspectionControls(QGroupBox):
    """A view menu and a slider (checkerboard tile size, swipe position) for the registered pair.

    The view is one Image layer over the fixed layer (its affine, with the region's scale and translate),
    computed off the GUI thread from the layers' own pixels; the user's layers are not touched.
    """

    DEBOUNCE_MS = 150

    def __init__(self, viewer):
        super().__init__("Inspect")
        self.viewer = viewer
        self.layer = None
        self._pair = None  # (fixed array, moving array, matrix between them, world affine of the fixed array's grid)
        self._sources = None  # (fixed levels, moving levels, matrix moving → fixed level-0 pixels (x, y))
        self._worker = None  # the one view being computed, if any
        self._requested = 0  # number of the newest request: an older result is dropped
        self._again = False  # a request came while a worker ran: it starts when that one ends
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.DEBOUNCE_MS)
        self._timer.timeout.connect(self._request)
        viewer.camera.events.center.connect(self._camera_moved)
        viewer.camera.events.zoom.connect(self._camera_moved)
        viewer.canvas.events.size.connect(self._camera_moved)
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

    def show_pair(self, fixed: np.ndarray, moving: np.ndarray, matrix: np.ndarray, fixed_layer, fixed_to_full,
                  moving_layer=None) -> None:
        """Make views of a registration: arrays as registered, ``matrix`` between them (moving → fixed pixels),
        ``fixed_to_full`` from the fixed array's pixels to the fixed layer's data pixels. Views sample the
        layers' own pixels (all levels) when ``moving_layer`` is given, else the arrays. Nothing is computed
        here (a nudge by hand calls this on every key press)."""
        moving_levels = [moving]
        full = transforms.compose(matrix, fixed_to_full)  # moving array → fixed level-0 pixels
        if moving_layer is not None:
            moving_levels = layer_levels(moving_layer)
            full = transforms.compose(transforms.resample_matrix(moving_levels[0].shape, moving.shape), full)
        self._pair = (fixed, moving, matrix, data_to_world_matrix(fixed_layer), fixed_to_full)
        self._sources = (layer_levels(fixed_layer), moving_levels, full)
        self.setEnabled(True)
        self.update_view()

    def _tile(self) -> int | None:
        """The checkerboard's tile size in pixels of the registered arrays: up to a quarter of the image."""
        return None if self._pair is None else max(4, round(self.slider.value() / 100 * max(self._pair[0].shape[:2]) / 4))

    def _tile_full(self) -> float:
        """The checkerboard's tile size in fixed level-0 pixels."""
        return self._tile() * float(np.sqrt(abs(np.linalg.det(np.asarray(self._pair[4], float)[:2, :2]))))

    def _show_value(self) -> None:
        name, value = self.view_combo.currentText(), self.slider.value()
        tile = self._tile()
        self.value_label.setText(f"tiles {tile} px" if name == "checkerboard" and tile else
                                 f"curtain {value} %" if name == "swipe" else f"{value} %")

    def update_view(self) -> None:
        """The chosen view, computed for the region in view (the layer comes when the worker is done)."""
        self._show_value()
        if self._pair is None or self.view_combo.currentText() == OFF:
            self._requested += 1  # a view still being computed is not shown
            return self._remove_layer()
        self._request()

    def _camera_moved(self, event=None) -> None:
        if self._pair is not None and self.view_combo.currentText() != OFF:
            self._timer.start()  # restarted by every move: computed once the camera rests

    def _region(self) -> inspection.Grid | None:
        """The grid of the fixed image's region in view, from the camera and the canvas size."""
        fixed_levels, affine = self._sources[0], self._pair[3]
        camera, (height, width) = self.viewer.camera, self.viewer.canvas.size
        centre, half = np.asarray(camera.center[-2:], float), np.array([height, width], float) / (2 * camera.zoom)
        corners = centre + half * np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]])
        to_data = np.linalg.inv(affine)
        corners_rc = corners @ to_data[:2, :2].T + to_data[:2, 2]
        return inspection.grid_in_view(corners_rc, (height, width), fixed_levels[0].shape)

    def _request(self) -> None:
        """Start computing the view for the camera as it is now, or once the running computation ends."""
        self._timer.stop()
        self._requested += 1
        if self._worker is not None:
            self._again = True
            return
        name = self.view_combo.currentText()
        if self._pair is None or name == OFF:
            return
        grid = self._region()
        if grid is None:
            return
        parameter = self._tile_full() if name == "checkerboard" else self.slider.value() / 100
        fixed_levels, moving_levels, matrix = self._sources
        number = self._requested
        self._worker = create_worker(inspection.region_view, name, parameter, grid, fixed_levels, moving_levels,
                                     matrix, _start_thread=False)
        self._worker.returned.connect(lambda data: self._computed(number, name, grid, data))
        self._worker.finished.connect(self._worker_done)
        self._worker.start()

    def _worker_done(self) -> None:
        self._worker = None
        if self._again:
            self._again = False
            self._request()

    def _computed(self, number: int, name: str, grid: inspection.Grid, data: np.ndarray) -> None:
        if number != self._requested or self._pair is None or self.view_combo.currentText() != name:
            return  # overtaken: a newer request or a cleared pair
        title, scale, translate = f"inspection: {name}", (grid.step, grid.step), grid.origin
        if self.layer is not None and self.layer in self.viewer.layers and self.layer.rgb == (data.ndim == 3):
            self.layer.name, self.layer.affine = title, self._pair[3]
            self.layer.scale, self.layer.translate, self.layer.data = scale, translate, data
        else:
            self._remove_layer()
            self.layer = self.viewer.add_image(data, name=title, affine=self._pair[3], scale=scale,
                                               translate=translate, rgb=data.ndim == 3, contrast_limits=(0.0, 1.0))

    def clear(self) -> None:
        """Forget the pair and remove the view (Reset)."""
        self._pair = self._sources = None
        self._requested += 1
        self._again = False
        self.view_combo.setCurrentText(OFF)
        self._remove_layer()
        self.setEnabled(False)

    def _remove_layer(self) -> None:
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None
