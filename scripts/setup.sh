#!/usr/bin/env bash
# One-time set-up on a fresh Debian machine: system libraries for napari/Qt, a venv, CPU torch, the package.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES="xvfb xauth libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 libglib2.0-0"
missing=$(for p in $SYSTEM_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
# The package is installed editable, so only a change of the packaging (or of this script) needs
# the Python installs again: skip them when the venv was made from the same files.
STAMP=.venv/.histoaffine-setup
wanted=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Pinned: this version is a local CPU build; an unpinned torch pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[testing]"
# Qt 6 (PyQt6) only: a venv made when the default was PyQt5 still has it, and qtpy would pick it first.
old_qt=$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | grep -io '^pyqt5[a-z0-9_-]*' || true)
[ -z "$old_qt" ] || .venv/bin/python -m pip uninstall -q -y $old_qt
echo "$wanted" > "$STAMP"
