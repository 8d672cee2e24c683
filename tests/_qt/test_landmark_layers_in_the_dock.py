"""The Register dock's landmark table after landmark layers change: a removed layer clears it (with the reason)
and stops the computing; numbers never repeat (issue 27). Run under xvfb-run."""
import numpy as np
import pytest

from napari_histoaffine._qt import register_widget as rw
from napari_histoaffine.plugin import session as session_module

TIMEOUT_MS = 180_000


@pytest.fixture
def registered(make_napari_viewer, monkeypatch, qtbot):
    errors = []
    monkeypatch.setattr(rw, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-histoaffine", "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    widget.register_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.table.table.rowCount() == 36 and not errors
    return viewer, widget, errors


def _ids(widget):
    return [widget.table.table.item(row, 0).text() for row in range(widget.table.table.rowCount())]


@pytest.mark.parametrize("name", ["fixed landmarks", "moving landmarks", "moving landmarks (registered)"])
def test_removing_a_landmark_layer_clears_the_table_and_stops_the_computing(registered, monkeypatch, name):
    viewer, widget, errors = registered
    viewer.layers.remove(name)
    assert widget.table.table.rowCount() == 0 and widget.table.tre.size == 0
    assert f"'{name}' was removed" in widget.table.summary.text()
    calls = []
    monkeypatch.setattr(session_module, "tre", lambda *args: calls.append(args))
    for layer in ("fixed landmarks", "moving landmarks"):
        if layer in viewer.layers:  # editing what is left computes nothing and shows no numbers
            viewer.layers[layer].data = viewer.layers[layer].data + 1.0
    widget.correct.change(np.diag([-1.0, 1.0, 1.0]))  # a flip by hand moves the moving landmarks
    assert not calls and widget.table.table.rowCount() == 0
    assert "moving landmarks (registered)" not in viewer.layers  # not rebuilt
    assert "was removed" in widget.table.summary.text() and not errors
    widget.reset()
    assert widget.result is None


def test_a_landmark_added_after_a_deletion_gets_a_new_number(registered):
    viewer, widget, errors = registered
    for name in ("fixed landmarks", "moving landmarks"):
        layer = viewer.layers[name]
        layer.selected_data = {3}
        layer.remove_selected()
        layer.selected_data = {2}
        layer.add([[100.0, 120.0]])  # napari would copy the selected point's number (or the deleted one's)
    ids = _ids(widget)
    assert ids[:4] == ["0", "1", "2", "4"] and ids[-1] == "36" and len(ids) == len(set(ids)) == 36
    assert list(viewer.layers["moving landmarks"].features["index"][-2:]) == [35, 36]
    layer = viewer.layers["fixed landmarks"]
    layer.selected_data = {35}
    layer.remove_selected()
    layer.add([[90.0, 90.0]])
    assert list(layer.features["index"][-2:]) == [35, 37]  # not 36 again after 36 was deleted
    assert not errors
