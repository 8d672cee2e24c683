#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite headless under a virtual X server.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
xvfb-run -a .venv/bin/python -m pytest "$@"
