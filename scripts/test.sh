#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite headless under a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/check_layout.py  # module sizes, no import cycles, Qt only under _qt/
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} xvfb-run -a .venv/bin/python -m pytest "$@"
