"""The plugin runs on a Qt 6 binding: napari 0.9 deprecates PyQt5 and warns about it on every start."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

# Qt 5 still works when asked for (QT_API=pyqt5 with PyQt5 installed); only the default install must be Qt 6.
ASKED_FOR_QT5 = os.environ.get("QT_API", "").lower() in ("pyqt5", "pyside2")
qt6_by_default = pytest.mark.skipif(ASKED_FOR_QT5, reason="QT_API asks for a Qt 5 binding")

# What napari says on a Qt 5 binding: "napari support for the PyQt5 backend is deprecated …" (a notification
# when the window shows) and "System theme detection requires a Qt6 backend …" (a UserWarning at start).
ABOUT_BINDING = re.compile(r"PyQt5|PySide2|Qt ?6 backend|Qt ?5 backend|Qt binding", re.IGNORECASE)

START_VIEWER = """
import json, logging, warnings

logged = []
class Keep(logging.Handler):
    def emit(self, record):
        logged.append(record.getMessage())
logging.getLogger().addHandler(Keep(logging.WARNING))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import napari
    from napari.utils.notifications import notification_manager
    from qtpy import API_NAME, QT_VERSION
    from qtpy.QtWidgets import QApplication

    notes = []
    notification_manager.notification_ready.connect(lambda n: notes.append(str(n.message)))
    viewer = napari.Viewer(show=True)  # napari's binding notice comes with the first show
    for _ in range(20):
        QApplication.processEvents()
    viewer.close()
print(json.dumps({"binding": f"{API_NAME} {QT_VERSION}", "said": [str(w.message) for w in caught] + notes + logged}))
"""


@qt6_by_default
def test_qt_binding_is_qt6():
    """The installed extra gives qtpy a Qt 6 binding (PyQt6 by default; PySide6 works too)."""
    import qtpy

    assert qtpy.QT6, f"qtpy picked {qtpy.API_NAME} (Qt {qtpy.QT_VERSION}): install '.[napari]' (Qt 6) and remove PyQt5"


@qt6_by_default
@pytest.mark.gui
def test_viewer_starts_without_binding_warning(tmp_path):
    """A fresh process opens and shows a viewer; napari says nothing about the Qt binding (a process of its own:
    napari gives its PyQt5 notice once per process, and only for a shown window)."""
    env = {**os.environ, "NAPARI_CONFIG": str(tmp_path / "settings.yaml")}  # the user's settings stay untouched
    run = subprocess.run([sys.executable, "-c", START_VIEWER], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])
    about_binding = [m for m in outcome["said"] if ABOUT_BINDING.search(m)]
    stderr_lines = [line for line in run.stderr.splitlines() if ABOUT_BINDING.search(line)]
    assert not about_binding and not stderr_lines, (outcome["binding"], about_binding, stderr_lines)
