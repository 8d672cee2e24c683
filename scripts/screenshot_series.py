"""Align three sections of the sample onto its reference with the series dock and save docs/screenshot_series.png
(run under ``xvfb-run -a``)."""
import tempfile
from pathlib import Path

import napari
import numpy as np
from napari.settings import get_settings
from qtpy.QtWidgets import QApplication

from napari_histoaffine.sample import make_pair

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_series.png"


def main() -> None:
    get_settings(Path(tempfile.mkdtemp()) / "settings.yaml").application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-histoaffine")
    viewer.window.resize(1500, 950)
    pair = make_pair()
    viewer.add_image(pair.fixed, name="reference (IHC)", rgb=True)
    viewer.add_image(pair.moving, name="section 2", rgb=True)
    viewer.add_image(np.ascontiguousarray(np.rot90(pair.moving)), name="section 3 (turned)", rgb=True)
    viewer.add_image(np.ascontiguousarray(pair.moving[:, ::-1]), name="section 4 (mirrored)", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register a series")
    widget.reference_combo.setCurrentText("reference (IHC)")
    widget.register_button.click()
    while widget.worker is not None:
        QApplication.processEvents()
    viewer.reset_view()
    for _ in range(5):
        QApplication.processEvents()
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"saved {OUT}: {widget.status.text()}")
    viewer.close()


if __name__ == "__main__":
    main()
