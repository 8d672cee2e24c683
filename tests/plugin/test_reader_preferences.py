"""This plugin as napari's preferred reader (issue 27): which of its reader patterns napari's settings do not send
to it, and mapping them without touching the user's other entries (a settings file of the test's own)."""
import yaml
from napari.settings import NapariSettings

from napari_histoaffine.plugin.reader_preferences import prefer_this_plugin, reader_patterns, unmapped_patterns


def test_unmapped_patterns_and_mapping_them_keeps_other_entries(tmp_path):
    path = tmp_path / "settings.yaml"
    settings = NapariSettings(config_path=path)
    plugin, patterns = reader_patterns()
    assert plugin == "napari-histoaffine" and {"*.csv", "*.svs", "*.tif", "*.ndpi", "*.mrxs"} <= set(patterns)
    settings.plugins.extension2reader = {"*.zarr": "napari", "*.tif": "napari", "*.svs": plugin}
    unmapped = unmapped_patterns(settings)
    assert unmapped["*.tif"] == "napari" and unmapped["*.csv"] is None and "*.svs" not in unmapped
    assert set(unmapped) == set(patterns) - {"*.svs"}

    assert sorted(prefer_this_plugin(settings)) == sorted(unmapped)
    mapping = settings.plugins.extension2reader
    assert mapping["*.zarr"] == "napari" and all(mapping[p] == plugin for p in patterns)
    assert unmapped_patterns(settings) == {} and prefer_this_plugin(settings) == []
    saved = yaml.safe_load(path.read_text())["plugins"]["extension2reader"]  # napari saved it to its file
    assert saved["*.zarr"] == "napari" and saved["*.csv"] == saved["*.svs"] == plugin
