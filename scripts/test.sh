#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite headless under a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_API=${QT_API:-pyqt6}  # the Qt 6 binding setup.sh installs (QT_API=pyside6 or pyqt5 if you installed those)
export PYTEST_QT_API=${PYTEST_QT_API:-$QT_API}  # pytest-qt on the same binding as qtpy
.venv/bin/python scripts/check_layout.py  # module sizes, no import cycles, Qt only under _qt/
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} xvfb-run -a .venv/bin/python -m pytest "$@"
