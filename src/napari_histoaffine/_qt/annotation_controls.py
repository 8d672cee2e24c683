"""The Register dock's annotation controls: transfer Shapes layers or QuPath GeoJSON between the registered
sections, import and export GeoJSON, bind a layer to the moving section. What they do is in
:mod:`napari_histoaffine.plugin.annotations`."""
from __future__ import annotations

from pathlib import Path

from napari.layers import Points, Shapes
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog, QFormLayout, QGridLayout, QGroupBox

from ..errors import HistoAffineError, InputError
from ..files.geojson import read_geojson
from ..plugin.annotations import add_annotations, export_layer, transfer
from .common import LayerCombo, make_button

MOVING, FIXED = "moving section", "fixed section"
GEOJSON_FILTER = "GeoJSON (*.geojson *.json);;All files (*)"


class AnnotationControls(QGroupBox):
    """*Transfer annotations* and GeoJSON files; ``register`` is the Register widget (``session``, ``pickers``)."""

    def __init__(self, register):
        super().__init__("Annotations")
        self.register = register
        self.viewer = register.viewer
        self.layer_combo = LayerCombo()
        self.layer_combo.setToolTip("A Shapes (or Points) layer drawn on the section chosen below")
        self.section_combo = LayerCombo()
        self.section_combo.addItems([MOVING, FIXED])
        self.section_combo.setToolTip("The section the annotations belong to: transfer maps them onto the other one")
        self.transfer_button = make_button("Transfer to the other section", lambda: self.transfer_layer())
        self.file_button = make_button("Transfer GeoJSON file…", self._ask_transfer_file)
        self.import_button = make_button("Import GeoJSON…", self._ask_import)
        self.export_button = make_button("Export GeoJSON…", self._ask_export)
        self.bind_button = make_button("Follow the moving section", lambda: self.bind_layer())
        self.bind_button.setToolTip("The layer, as shown now, lies on the registered moving section: it follows it "
                                    "from here on, and Reset takes it back with the section")
        form = QFormLayout()
        form.addRow("Layer", self.layer_combo)
        form.addRow("Drawn on", self.section_combo)
        grid = QGridLayout(self)
        grid.addLayout(form, 0, 0, 1, 2)
        # the long labels get a row each, the two short ones share one: the dock stays narrow
        for row, (button, column, span) in enumerate(((self.transfer_button, 0, 2), (self.file_button, 0, 2),
                                                      (self.import_button, 0, 1), (self.bind_button, 0, 2))):
            grid.addWidget(button, 1 + row, column, 1, span)
        grid.addWidget(self.export_button, 3, 1)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None) -> None:
        """List the Shapes and Points layers (keeping the current choice; the newest Shapes layer by default)."""
        if event is not None and event.type == "inserted":
            event.value.events.name.connect(self.refresh)
        hidden = self.register.session.registered_points
        layers = [ly for ly in self.viewer.layers if isinstance(ly, (Shapes, Points))
                  and not (hidden is not None and ly.unique_id == hidden.unique_id)]
        names = [ly.name for ly in layers if isinstance(ly, Shapes)] + [ly.name for ly in layers
                                                                        if not isinstance(ly, Shapes)]
        current = self.layer_combo.currentText()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        shapes = [n for n in names if isinstance(self.viewer.layers[n], Shapes)]
        self.layer_combo.setCurrentText(current if current in names else (shapes[-1] if shapes else ""))
        self.layer_combo.blockSignals(False)

    # ---------------------------------------------------------------- what the buttons do
    def transfer_layer(self, from_moving: bool | None = None) -> list:
        """The chosen layer mapped onto the other section as new layers (the moving → fixed direction when the
        layer is drawn on the moving section)."""
        return self._try(lambda: transfer(self.register.session, self._layer(), self._from_moving(from_moving)))

    def transfer_file(self, path, from_moving: bool | None = None) -> list:
        """A GeoJSON file in the chosen section's pixels mapped onto the other section as new layers."""
        return self._try(lambda: transfer(self.register.session, path, self._from_moving(from_moving)))

    def import_file(self, path, onto_moving: bool | None = None) -> list:
        """A GeoJSON file added as annotation layers on the chosen section (they follow it when it is registered)."""
        def run():
            document = read_geojson(path)
            return add_annotations(self.register.session, document, Path(path).stem, self._section(onto_moving))
        return self._try(run)

    def export_file(self, path, on_moving: bool | None = None) -> bool:
        """The chosen layer written as GeoJSON in the chosen section's full-resolution pixels; True when written."""
        return bool(self._try(lambda: export_layer(self._layer(), self._section(on_moving), path) or True))

    def bind_layer(self) -> None:
        """The chosen layer follows the registered moving section from here on."""
        self._try(lambda: self.register.session.bind(self._layer()))

    # ---------------------------------------------------------------- helpers
    def _from_moving(self, from_moving) -> bool:
        return self.section_combo.currentText() == MOVING if from_moving is None else from_moving

    def _section(self, moving: bool | None):
        session = self.register.session
        fixed, moving_layer = session.picked[:2] if session.picked is not None else self.register.pickers.selected()[:2]
        return moving_layer if self._from_moving(moving) else fixed

    def _layer(self):
        name = self.layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise InputError("Pick a Shapes or Points layer of annotations")
        return self.viewer.layers[name]

    @staticmethod
    def _try(action):
        try:
            return action()
        except HistoAffineError as exc:
            show_error(str(exc))
        return None

    def _ask_transfer_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"GeoJSON annotations of the {self.section_combo.currentText()}",
                                              "", GEOJSON_FILTER)
        if path and self.transfer_file(path):
            show_info(f"Transferred {Path(path).name}")

    def _ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, f"Import GeoJSON onto the {self.section_combo.currentText()}", "",
                                              GEOJSON_FILTER)
        if path:
            self.import_file(path)

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export annotations as GeoJSON",
                                              f"{self.layer_combo.currentText() or 'annotations'}.geojson",
                                              GEOJSON_FILTER)
        if path and self.export_file(path):
            show_info(f"Saved {path}")
