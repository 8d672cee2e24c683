"""This plugin as napari's preferred reader for slides and landmark files (napari's reader settings).

napari's own File → Open and drag-and-drop ask ``settings.plugins.extension2reader`` (file pattern → plugin)
first; without an entry they hand TIFFs and CSVs to the built-in reader, which loads one full-size slide level
(seconds slower) and finds no data in a landmark CSV. :func:`unmapped_patterns` says which of the patterns this
plugin's readers declare (``napari.yaml``) napari does not yet send to it; :func:`prefer_this_plugin` maps them,
leaving every other entry as it was. Only the user's click in the Register dock calls it.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[1] / "napari.yaml"


@cache
def reader_patterns() -> tuple[str, tuple[str, ...]]:
    """This plugin's name and the file patterns of its readers, as its manifest declares them (in its order)."""
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    readers = manifest.contributions.readers or ()
    return manifest.name, tuple(dict.fromkeys(p for reader in readers for p in reader.filename_patterns))


def _settings(settings):
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    return settings


def unmapped_patterns(settings=None) -> dict[str, str | None]:
    """The reader patterns napari does not send to this plugin: pattern → the plugin it names now (None: none).

    ``settings``: napari's settings (default: ``napari.settings.get_settings()``).
    """
    plugin, patterns = reader_patterns()
    mapping = _settings(settings).plugins.extension2reader
    return {pattern: mapping.get(pattern) for pattern in patterns if mapping.get(pattern) != plugin}


def prefer_this_plugin(settings=None) -> list[str]:
    """Make this plugin napari's reader for each of its patterns (napari saves its settings file); the other
    entries stay. Returns the patterns that changed (none when all were mapped already)."""
    settings = _settings(settings)
    changed = list(unmapped_patterns(settings))
    if changed:
        plugin, _ = reader_patterns()
        settings.plugins.extension2reader = {**settings.plugins.extension2reader,
                                             **dict.fromkeys(changed, plugin)}
    return changed
