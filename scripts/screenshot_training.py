"""Fine-tune the bundled network on the sample pair in napari and save docs/screenshot_training.png mid-training (``xvfb-run -a``)."""
import tempfile
from pathlib import Path

import napari
from napari.settings import get_settings
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_training.png"
CURVE_POINTS = 30


def main() -> None:
    # throw-away settings that keep napari's own warning toasts (e.g. about PyQt5) off the picture
    get_settings(Path(tempfile.mkdtemp()) / "settings.yaml").application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-histoaffine")
    viewer.window.resize(1500, 1050)
    viewer.open_sample("napari-histoaffine", "histology_pair")
    viewer.layers["moving (restained)"].opacity = 0.5
    for name in ("fixed landmarks", "moving landmarks"):  # still used by the pair (rTRE), hidden for the picture
        viewer.layers[name].visible = False
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Fine-tune network")
    widget.add_layer_pair()
    widget.settings.start_from.value = "bundled default"  # fine-tuning the shipped network, default settings
    widget.settings.length.value = 200
    widget.settings.steps_per_epoch.value = 10
    widget.start_button.click()
    while len(widget.loss_line.get_xdata()) < CURVE_POINTS:
        QApplication.processEvents()
    widget._draw()
    for _ in range(5):  # let the canvas and the dock's layout settle
        QApplication.processEvents()
    OUT.parent.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"saved {OUT}: {widget.status.text()}")
    widget.stop()
    while widget.worker is not None:
        QApplication.processEvents()
    viewer.close()


if __name__ == "__main__":
    main()
