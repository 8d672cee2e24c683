"""The plugin's docks on a small laptop screen and the 1600-px-wide one where Fine-tune was found clipped (issue 27):
opened together from the Plugins menu they share one area as tabs (no slivers), none scrolls sideways, and each
dock's main button is in view or a vertical scroll away."""
import numpy as np
import pytest
from qtpy.QtWidgets import QScrollArea

DOCKS = {"Register sections": "register_button", "Fine-tune network": "start_button",
         "Register a series": "register_button"}


@pytest.mark.parametrize("screen", [(1366, 768), (1600, 900)])
def test_three_docks_open_as_tabs_without_sideways_scrolling(make_napari_viewer, qtbot, screen):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*screen)
    fixed = moving = np.zeros((64, 64), np.uint8)
    viewer.add_image(fixed, name="a section with a long name, as slide files have")
    viewer.add_image(moving, name="its neighbour with an even longer name, as slide files have")
    docks = {name: viewer.window.add_plugin_dock_widget("napari-histoaffine", name) for name in DOCKS}
    qtbot.wait(50)
    for name, (dock, widget) in docks.items():
        others = {d.windowTitle() for d in window.tabifiedDockWidgets(dock)}
        assert others == {d.windowTitle() for n, (d, _) in docks.items() if n != name}, name
        dock.raise_()
        qtbot.wait(20)
        area = widget.findChild(QScrollArea)
        viewport = area.viewport()
        assert not area.horizontalScrollBar().isVisible(), name
        assert area.widget().width() <= viewport.width(), f"{name}: content cut at the side"
        assert dock.width() <= 400 and viewport.height() >= 400, f"{name}: {dock.width()} × {viewport.height()}"
        button = getattr(widget, DOCKS[name])
        area.ensureWidgetVisible(button)  # a vertical scroll at most
        qtbot.wait(20)
        left_top = button.mapTo(viewport, button.rect().topLeft())
        right_bottom = button.mapTo(viewport, button.rect().bottomRight())
        assert area.horizontalScrollBar().value() == 0, name
        assert 0 <= left_top.x() and right_bottom.x() < viewport.width(), name
        assert 0 <= left_top.y() and right_bottom.y() < viewport.height(), name
