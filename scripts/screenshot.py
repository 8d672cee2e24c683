"""Register the sample pair in napari and save docs/screenshot_register.png, its checkerboard view
(docs/screenshot_checkerboard.png), then force the other mirror state and save
docs/screenshot_flagged.png (the verdict flags it). Run under ``xvfb-run -a``."""
import tempfile
from pathlib import Path

import napari
from napari.settings import get_settings
from qtpy.QtWidgets import QApplication

DOCS = Path(__file__).resolve().parents[1] / "docs"
OUT, CHECKERBOARD, FLAGGED = (DOCS / f"screenshot_{name}.png" for name in ("register", "checkerboard", "flagged"))


def settle(widget) -> None:
    while widget.worker is not None:
        QApplication.processEvents()
    for _ in range(5):  # let the dock's layout settle
        QApplication.processEvents()


def main() -> None:
    # throw-away settings that keep napari's own warning toasts (e.g. about PyQt5) off the picture
    get_settings(Path(tempfile.mkdtemp()) / "settings.yaml").application.gui_notification_level = "error"
    viewer = napari.Viewer(title="napari-histoaffine")
    viewer.window.resize(1500, 950)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections (with sample pair)")
    widget.register_button.click()
    settle(widget)
    viewer.layers["moving landmarks"].visible = False  # still in the moving section's own space
    viewer.reset_view()
    settle(widget)
    DOCS.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False)
    print(f"saved {OUT}: {widget.table.summary.text()}")
    widget.inspect.view_combo.setCurrentText("checkerboard")
    widget.inspect.slider.setValue(25)
    settle(widget)
    viewer.screenshot(str(CHECKERBOARD), canvas_only=False)
    print(f"saved {CHECKERBOARD}")
    widget.inspect.view_combo.setCurrentText("off (overlay)")
    result = widget.result
    widget.try_candidate(next(i for i, p in enumerate(result.candidates) if p.flipped != result.flipped))
    settle(widget)
    viewer.screenshot(str(FLAGGED), canvas_only=False)
    print(f"saved {FLAGGED}: {widget.result.verdict.reason}")
    viewer.close()


if __name__ == "__main__":
    main()
