#!/usr/bin/env bash
# Set up (if needed), then open napari with the Register widget docked and the sample pair loaded;
# without a screen, register the sample pair from the command line instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_API=${QT_API:-pyqt6}  # the Qt 6 binding setup.sh installs (QT_API=pyside6 or pyqt5 if you installed those)
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  exec .venv/bin/napari -w napari-histoaffine "Register sections (with sample pair)"
fi
echo "no screen: registering the sample pair with the CLI (histoaffine demo)" >&2
exec .venv/bin/histoaffine demo --out histoaffine-demo
