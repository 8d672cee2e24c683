"""The engine, the file formats, the CLI and the Qt-free napari glue work on a machine without Qt."""
import subprocess
import sys

IMPORT_ALL_BUT_QT = """
import importlib, pkgutil, sys
import napari_histoaffine
names = [m.name for m in pkgutil.iter_modules(napari_histoaffine.__path__, "napari_histoaffine.")]
while names:
    name = names.pop()
    if name.split(".")[1] == "_qt":
        continue
    module = importlib.import_module(name)
    if hasattr(module, "__path__"):
        names += [m.name for m in pkgutil.iter_modules(module.__path__, name + ".")]
print(sorted({m.split(".")[0] for m in sys.modules} & {"qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6"}))
"""


def test_no_module_outside_qt_imports_qt():
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL_BUT_QT], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_line_help_loads_no_engine():
    code = "import sys; from napari_histoaffine.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
