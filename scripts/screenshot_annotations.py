"""Outline a tumour-like nest on the H&E-like section of the sample, register it onto the IHC with the Register
dock, transfer the outline and save docs/screenshot_annotations.png (run under ``xvfb-run -a``): the H&E with its
outline as drawn (left) and the IHC with the transferred one (right)."""
import tempfile
from pathlib import Path

import napari
import numpy as np
from napari.settings import get_settings
from qtpy.QtWidgets import QApplication, QScrollArea

from napari_histoaffine.plugin.annotations import SECTION

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_annotations.png"


def outline() -> np.ndarray:
    """An irregular outline around the round nest right of centre in the moving section, (row, col) pixels."""
    t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    wobble = 1 + 0.07 * np.sin(3 * t) + 0.05 * np.cos(5 * t + 1)
    x, y = 80 * np.cos(t) * wobble, 66 * np.sin(t) * wobble
    c, s = np.cos(np.radians(-35)), np.sin(np.radians(-35))
    return np.column_stack([322 + s * x + c * y, 410 + c * x - s * y])


def settle() -> None:
    for _ in range(5):
        QApplication.processEvents()


def main() -> None:
    get_settings(Path(tempfile.mkdtemp()) / "settings.yaml").application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-histoaffine")
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-histoaffine", "histology_pair")
    for name in ("fixed landmarks", "moving landmarks"):
        viewer.layers.remove(name)
    fixed, moving = viewer.layers["fixed (IHC)"], viewer.layers["moving (restained)"]
    fixed.name, moving.name = "IHC (fixed)", "H&E (moving)"
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    # the outline is drawn on the H&E before registering: it belongs to that section and follows it
    drawn = viewer.add_shapes([outline()], shape_type="polygon", name="tumour (drawn on H&E)", edge_color="lime",
                              face_color="transparent", edge_width=4, metadata={SECTION: moving.name})
    widget.register_button.click()
    while widget.worker is not None:
        QApplication.processEvents()
    widget.annotate.layer_combo.setCurrentText(drawn.name)
    widget.annotate.section_combo.setCurrentText("moving section")
    widget.annotate.transfer_button.click()
    transferred = viewer.layers[f"{drawn.name} on {fixed.name}"]
    transferred.edge_color, transferred.edge_width = "lime", 4
    transferred.name = "tumour (transferred to IHC)"
    status = widget.status.text()
    widget.reset()  # the H&E and its outline back as they were; the transferred outline stays on the IHC
    for layer, index in ((moving, 0), (drawn, 1), (fixed, 2), (transferred, 3)):  # grid cells of two layers each
        viewer.layers.move(viewer.layers.index(layer), index)
    viewer.canvas.grid.enabled, viewer.canvas.grid.stride = True, 2
    viewer.layers.selection.active = transferred
    viewer.reset_view()
    settle()
    widget.findChild(QScrollArea).ensureWidgetVisible(widget.annotate)  # the dock scrolled to the annotations
    settle()
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"saved {OUT}: {status}")
    viewer.close()


if __name__ == "__main__":
    main()
