"""Per-landmark TRE / rTRE table (TRE also in µm for a calibrated fixed slide) with median, mean and max rTRE
underneath."""
from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..evaluation.metrics import SUCCESS_RTRE

UM_COLUMN = 2


class LandmarkTable(QWidget):
    """Shows the error of each landmark pair; ``tre`` / ``rtre`` / ``tre_um`` hold the numbers last shown (``tre_um``
    None, and its column hidden, when the fixed image's pixel size is unknown: no µm are made up)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tre = np.zeros(0)
        self.rtre = np.zeros(0)
        self.tre_um = None
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["#", "TRE (px)", "TRE (µm)", "rTRE"])
        self.table.setColumnHidden(UM_COLUMN, True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.summary = QLabel("No landmarks compared yet.")
        self.summary.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        layout.addWidget(self.summary)

    def show_errors(self, tre_px, diagonal: float, ids=None, tre_um=None) -> None:
        """Fill the table with each landmark's TRE (fixed pixels), rTRE (TRE / fixed image diagonal) and, where
        given, TRE in µm (the fixed image's pixel size known).

        ``ids`` are the landmarks' own numbers, the ones the canvas labels show (default: 0, 1, …),
        so rows still name the right landmark after some were deleted.
        """
        self.tre = np.asarray(tre_px, float)
        self.rtre = self.tre / diagonal
        self.tre_um = None if tre_um is None else np.asarray(tre_um, float)
        self.table.setColumnHidden(UM_COLUMN, self.tre_um is None)
        microns = [f"{u:.2f}" for u in self.tre_um] if self.tre_um is not None else ["–"] * len(self.tre)
        ids = range(len(self.tre)) if ids is None else ids
        self.table.setRowCount(len(self.tre))
        for i, (landmark, t, r, u) in enumerate(zip(ids, self.tre, self.rtre, microns)):
            for col, text in enumerate((str(landmark), f"{t:.2f}", u, f"{r:.4f}")):
                self.table.setItem(i, col, QTableWidgetItem(text))
        median = float(np.median(self.rtre))
        verdict = "success" if median <= SUCCESS_RTRE else "above the ANHIR success limit"
        um = (f" · TRE median {np.median(self.tre_um):.2f} µm, max {self.tre_um.max():.2f} µm"
              if self.tre_um is not None else "")
        self.summary.setText(f"rTRE median {median:.4f} · mean {self.rtre.mean():.4f} · max {self.rtre.max():.4f}"
                             f"{um} ({len(self.tre)} landmarks; {verdict} {SUCCESS_RTRE})")

    def show_message(self, text: str) -> None:
        """Clear the table and say why there are no numbers."""
        self.tre = self.rtre = np.zeros(0)
        self.tre_um = None
        self.table.setRowCount(0)
        self.summary.setText(text)
