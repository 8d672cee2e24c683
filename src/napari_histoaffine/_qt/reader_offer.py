"""The Register dock's offer to make this plugin napari's reader for slides and landmark files.

Shown only while napari's reader settings send some of the plugin's file patterns elsewhere (or nowhere); the
settings change only when the user clicks the button (that click is the consent), then the note says so.
"""
from __future__ import annotations

from napari.settings import get_settings
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..plugin.reader_preferences import prefer_this_plugin, reader_patterns, unmapped_patterns
from .common import make_button

OFFER = "napari's own File → Open reads slides slowly and landmark CSVs not at all."
OFFER_TIP = ("File → Open and drag-and-drop use napari's built-in reader: a slide loads one full-size level (seconds "
             "slower than this plugin's pyramid) and a landmark CSV 'returned no data'.")
BUTTON = "Make napari open slides and\nlandmark files with this plugin"  # two lines: the dock stays narrow
DONE = ("napari now opens slides and landmark files with this plugin (change it in napari's Preferences → "
        "Plugins).")


class ReaderOffer(QWidget):
    """A note and a button; hidden while napari sends every pattern of this plugin's readers to it (after the
    click: the note that it does). It follows napari's reader settings, also when changed in the Preferences."""

    def __init__(self):
        super().__init__()
        self.applied = False
        self.note = QLabel(OFFER)
        self.note.setWordWrap(True)
        self.note.setToolTip(OFFER_TIP)
        self.button = make_button(BUTTON, self.apply)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.note)
        layout.addWidget(self.button)
        events = get_settings().plugins.events.extension2reader
        events.connect(self.refresh)
        self.destroyed.connect(lambda: events.disconnect(self.refresh))
        self.refresh()

    def refresh(self, event=None) -> None:
        """The offer while some pattern is not mapped to this plugin (its tooltip lists them), else nothing."""
        unmapped = unmapped_patterns()
        plugin, _ = reader_patterns()
        replaced = [f"{pattern} (now {reader})" for pattern, reader in unmapped.items() if reader]
        self.button.setToolTip(
            f"Sets napari's preferred reader for {', '.join(unmapped) or 'no pattern'} to {plugin}"
            + (f", replacing {', '.join(replaced)}" if replaced else "")
            + ". Your other reader settings stay. A CSV that is not a landmark file then makes napari ask which "
              "reader to use.")
        self.applied = self.applied and not unmapped
        self.note.setText(DONE if self.applied else OFFER)
        self.button.setVisible(bool(unmapped))
        if not (unmapped or self.applied):
            self.hide()
        elif self.isHidden() and self.parentWidget() is not None:  # never a window of its own
            self.show()

    def apply(self) -> None:
        """The user's click: map the patterns to this plugin, then say so (the button goes)."""
        self.applied = True
        prefer_this_plugin()
        self.refresh()
