"""Qt pieces every dock shares: buttons, the scrolled dock layout, the weights-file chooser."""
from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFileDialog, QFrame, QLineEdit, QPushButton, QScrollArea, QVBoxLayout, QWidget

BUNDLED, WEIGHTS_FILE = "bundled default", "weights file…"


def make_button(text: str, slot) -> QPushButton:
    """A push button wired to ``slot``."""
    widget = QPushButton(text)
    widget.clicked.connect(slot)
    return widget

def scrolled_layout(owner: QWidget) -> QVBoxLayout:
    """A vertical layout in a scroll area that fills ``owner``: however tall a dock's content, the
    main window fits a 1366 × 768 screen and the lower controls are a scroll away."""
    inner, area = QWidget(), QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(inner)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    return QVBoxLayout(inner)

def browse_weights(parent: QWidget, path_edit: QLineEdit, choice: QComboBox) -> None:
    """Ask for a weights file; put it in ``path_edit`` and switch ``choice`` to the weights-file option."""
    path, _ = QFileDialog.getOpenFileName(parent, "Network weights", "", "safetensors (*.safetensors)")
    if path:
        path_edit.setText(path)
        choice.setCurrentText(WEIGHTS_FILE)
