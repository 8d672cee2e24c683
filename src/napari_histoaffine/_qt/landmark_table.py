"""Per-landmark TRE / rTRE table with median, mean and max rTRE underneath."""
from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..evaluation.metrics import SUCCESS_RTRE


class LandmarkTable(QWidget):
    """Shows the error of each landmark pair; ``tre`` / ``rtre`` hold the numbers last shown."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tre = np.zeros(0)
        self.rtre = np.zeros(0)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["#", "TRE (px)", "rTRE"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.summary = QLabel("No landmarks compared yet.")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.summary)

    def show_errors(self, tre_px, diagonal: float, ids=None) -> None:
        """Fill the table with each landmark's TRE (fixed pixels) and rTRE (TRE / fixed image diagonal).

        ``ids`` are the landmarks' own numbers, the ones the canvas labels show (default: 0, 1, …),
        so rows still name the right landmark after some were deleted.
        """
        self.tre = np.asarray(tre_px, float)
        self.rtre = self.tre / diagonal
        ids = range(len(self.tre)) if ids is None else ids
        self.table.setRowCount(len(self.tre))
        for i, (landmark, t, r) in enumerate(zip(ids, self.tre, self.rtre)):
            for col, text in enumerate((str(landmark), f"{t:.2f}", f"{r:.4f}")):
                self.table.setItem(i, col, QTableWidgetItem(text))
        median = float(np.median(self.rtre))
        verdict = "success" if median <= SUCCESS_RTRE else "above the ANHIR success limit"
        self.summary.setText(f"rTRE median {median:.4f} · mean {self.rtre.mean():.4f} · max {self.rtre.max():.4f} "
                             f"({len(self.tre)} landmarks; {verdict} {SUCCESS_RTRE})")

    def show_message(self, text: str) -> None:
        """Clear the table and say why there are no numbers."""
        self.tre = self.rtre = np.zeros(0)
        self.table.setRowCount(0)
        self.summary.setText(text)
