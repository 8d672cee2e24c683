"""The Register dock offers to make this plugin napari's reader for slides and landmark files (issue 27): nothing
changes before the click; after it napari's own open (File → Open, drag-and-drop) reads a landmark CSV with this
plugin. The settings are a file of the test's own: the user's are never read or written."""
import napari.settings
import numpy as np
import pytest
from napari.errors import MultipleReaderError

from napari_histoaffine._qt.reader_offer import OFFER
from napari_histoaffine.files.tables import write_landmarks

OTHERS = {"*.zarr": "napari", "*.tif": "napari", "/data/*.csv": "napari"}


@pytest.fixture
def own_settings(tmp_path, monkeypatch):
    settings = napari.settings.NapariSettings(config_path=tmp_path / "settings.yaml")
    monkeypatch.setattr(napari.settings, "_SETTINGS", settings)
    return settings


def test_offer_maps_patterns_only_on_click(own_settings, make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    own_settings.plugins.extension2reader = dict(OTHERS)  # (make_napari_viewer resets the settings)
    csv = tmp_path / "S1.csv"
    write_landmarks(csv, np.array([[10.0, 20.0], [30.0, 40.0]]))
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    offer = widget.reader_offer
    assert napari.settings.get_settings().config_path == tmp_path / "settings.yaml"
    assert not offer.isHidden() and not offer.button.isHidden()
    assert offer.button.text().replace("\n", " ") == "Make napari open slides and landmark files with this plugin"
    assert "*.tif (now napari)" in offer.button.toolTip()
    qtbot.wait(20)
    assert own_settings.plugins.extension2reader == OTHERS  # nothing changes without the click
    with pytest.raises(MultipleReaderError):  # napari's own open has no preference: it would ask
        viewer.open(csv, plugin=None)  # as File → Open and drag-and-drop do (viewer.open defaults to builtins)

    offer.button.click()
    mapping = own_settings.plugins.extension2reader
    assert mapping["*.csv"] == mapping["*.svs"] == mapping["*.tif"] == mapping["*.ndpi"] == "napari-histoaffine"
    assert {p: mapping[p] for p in OTHERS if p != "*.tif"} == {"*.zarr": "napari", "/data/*.csv": "napari"}
    assert offer.button.isHidden() and "now opens" in offer.note.text()
    (layer,) = viewer.open(csv, plugin=None)
    assert layer.name == "S1 landmarks" and len(layer.data) == 2

    own_settings.plugins.extension2reader = dict(OTHERS)  # removed in the Preferences: the offer is back
    assert not offer.button.isHidden() and offer.note.text() == OFFER
    own_settings.plugins.extension2reader = {**OTHERS, **dict.fromkeys(mapping, "napari-histoaffine")}
    assert offer.isHidden()  # mapped some other way: no offer


def test_no_offer_when_already_mapped(own_settings, make_napari_viewer):
    from napari_histoaffine.plugin.reader_preferences import prefer_this_plugin

    viewer = make_napari_viewer()
    prefer_this_plugin()
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    assert widget.reader_offer.isHidden()
