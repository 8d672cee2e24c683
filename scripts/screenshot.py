"""Register the sample pair in napari and save docs/screenshot_register.png (run under ``xvfb-run -a``)."""
import tempfile
from pathlib import Path

import napari
from napari.settings import get_settings
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parents[1] / "docs" / "screenshot_register.png"


def main() -> None:
    # throw-away settings that keep napari's own warning toasts (e.g. about PyQt5) off the picture
    get_settings(Path(tempfile.mkdtemp()) / "settings.yaml").application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-histoaffine")
    viewer.window.resize(1500, 950)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections (with sample pair)")
    widget.register_button.click()
    while widget.worker is not None:
        QApplication.processEvents()
    viewer.layers["moving landmarks"].visible = False  # still in the moving section's own space
    viewer.reset_view()
    for _ in range(5):  # let the dock's layout settle
        QApplication.processEvents()
    OUT.parent.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"saved {OUT}: {widget.table.summary.text()}")
    viewer.close()


if __name__ == "__main__":
    main()
