"""What a finished Fine-tune run offers: the network's figures before → after as Register reports them, Save,
Use for registration, and — only for a network that validates worse than the one it started from — a
distinct "Use it anyway" (the plain button then refuses, saying why)."""
from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QGridLayout, QLabel, QVBoxLayout, QWidget

from ..errors import InputError
from ..files.atomic import atomic_write
from .common import WEIGHTS_FILE, make_button
from .register_widget import RegisterWidget

NOTHING_TRAINED = "Nothing has been trained yet: start training and let at least one step run."


class RunOffer(QWidget):
    """The figures label and the Save / Use buttons of the Fine-tune dock, for the run's best network."""

    def __init__(self, viewer):
        super().__init__()
        self.viewer = viewer
        self.model_path: Path | None = None
        self.judgement = None
        self.figures = QLabel("")
        self.figures.setWordWrap(True)
        self.save_button = make_button("Save…", self.ask_save)
        self.use_button = make_button("Use for registration", self.use)
        self.anyway_button = make_button("Use it anyway", lambda: self.use(anyway=True))
        self.anyway_button.setToolTip("Switch Register to the fine-tuned network although it validates worse "
                                      "than the one it started from")
        buttons = QGridLayout()  # "Use it anyway" gets a row of its own: the dock stays narrow
        buttons.addWidget(self.save_button, 0, 0)
        buttons.addWidget(self.use_button, 0, 1)
        buttons.addWidget(self.anyway_button, 1, 0, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.figures)
        layout.addLayout(buttons)
        self.show_offer(None, None)

    @property
    def worse(self) -> bool:
        return self.judgement is not None and self.judgement.worse

    def show_offer(self, model_path: Path | None, judgement) -> None:
        """Offer ``model_path`` (None: nothing) with its judgement (None: not judged)."""
        self.model_path, self.judgement = model_path, judgement
        offered = model_path is not None
        self.save_button.setEnabled(offered)
        self.use_button.setEnabled(offered and not self.worse)
        self.anyway_button.setVisible(offered and self.worse)
        self.anyway_button.setEnabled(offered and self.worse)
        if judgement is None:
            self.figures.setText("")
            return
        head = "As Register reports them, before → after fine-tuning:"
        warning = ("<br><b>It validates worse than the network it started from: Register keeps its network unless "
                   "you click 'Use it anyway'.</b>" if self.worse else "")
        self.figures.setText("<br>".join([head] + [_escape(line) for line in judgement.lines()]) + warning)

    def save(self, path) -> None:
        """Copy the offered network to ``path`` atomically (a crash never leaves half a file)."""
        if self.model_path is None:
            raise InputError(NOTHING_TRAINED.rstrip("."))
        with atomic_write(path, "wb") as fh:
            fh.write(self.model_path.read_bytes())

    def ask_save(self) -> None:
        if self.model_path is None:
            show_warning(NOTHING_TRAINED)
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save fine-tuned network", "finetuned.safetensors",
                                              "safetensors (*.safetensors)")
        if not path:
            return
        try:
            self.save(path)
        except OSError as exc:
            show_error(f"Save failed: {exc}")
            return
        show_info(f"Saved {path}")

    def use(self, anyway: bool = False) -> None:
        """Point the open Register widget at the offered network (its model menu switches back to the default);
        a network that validates worse only with ``anyway`` (the "Use it anyway" button)."""
        register = next((w for w in self.viewer.window.dock_widgets.values() if isinstance(w, RegisterWidget)), None)
        if self.model_path is None:
            show_warning(NOTHING_TRAINED)
            return
        if self.worse and not anyway:
            show_warning(f"{self.judgement.verdict()} Register keeps its network; click 'Use it anyway' to switch.")
            return
        if register is None:
            show_warning("Open the 'Register sections' widget first, then click 'Use for registration' again.")
            return
        register.weights_edit.setText(str(self.model_path))
        register.model_combo.setCurrentText(WEIGHTS_FILE)
        worse = " although it validates worse than the one it started from" if self.worse else ""
        show_info(f"The Register widget now uses the fine-tuned network{worse} (choose 'bundled default' there to "
                  "go back).")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
