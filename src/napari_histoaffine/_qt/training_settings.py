"""The Fine-tune dock's settings: a magicgui form, one line per setting, and the run it describes."""
from __future__ import annotations

import copy
from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, SpinBox

from ..errors import InputError
from ..registration.network import NetworkConfig
from ..registration.weights import default_weights_path, resolve_model
from ..training.config import TrainingConfig, scaled_augmentation
from .common import BUNDLED, WEIGHTS_FILE

NEW = "new network"
FINE_TUNE_LR = 1e-4  # the paper's rate: gentle enough to adapt trained weights (a new network learns faster at 1e-3)
UNITS = ("steps", "epochs")


class TrainingSettings:
    """Which network to start from and how long and how hard to train it; :attr:`form` is the widget."""

    def __init__(self):
        d = TrainingConfig()
        self.start_from = ComboBox(label="Start from", choices=([BUNDLED] if default_weights_path() else [])
                                   + [WEIGHTS_FILE, NEW])
        self.weights = FileEdit(label="Weights", mode="r", filter="*.safetensors")
        self.width = SpinBox(label="New width", tooltip="New network width: channels after its stem", min=4, max=256,
                             value=NetworkConfig().width)
        self.length = SpinBox(label="Length", min=1, max=1_000_000, value=d.steps)
        self.unit = ComboBox(label="Counted in", choices=UNITS)  # a row of its own: the dock stays narrow
        self.steps_per_epoch = SpinBox(label="Steps per epoch", min=1, max=100_000, value=100)
        self.lr = FloatSpinBox(label="Learning rate", min=1e-5, max=0.1, step=1e-5, value=FINE_TUNE_LR)
        self.accumulation = SpinBox(label="Pairs per step", min=1, max=64, value=d.accumulation)
        self.augmentation = FloatSpinBox(label="Augmentation", tooltip="Augmentation strength: times the default "
                                         "augmentation (0: none, 1: the default)", min=0.0, max=2.0, step=0.1, value=1.0)
        self.working_size = SpinBox(label="Size (px)", tooltip="Working size: the long side, in pixels, the sections "
                                    "are trained at", min=64, max=4096, value=d.working_size)
        self.form = Container()
        self.form.extend([self.start_from, self.weights, self.width, self.length, self.unit, self.steps_per_epoch,
                          self.lr, self.accumulation, self.augmentation, self.working_size])  # added after init: labels align
        self.start_from.changed.connect(self._start_changed)
        self._start_changed(self.start_from.value)

    def _start_changed(self, choice: str) -> None:
        self.weights.enabled = choice == WEIGHTS_FILE
        self.width.enabled = choice == NEW

    def config(self, out_dir: str) -> TrainingConfig:
        """The run's TrainingConfig (validation once per epoch; checkpoints in ``out_dir``)."""
        epochs = self.unit.value == "epochs"
        return TrainingConfig(
            steps=self.length.value, epochs=self.length.value if epochs else None,
            steps_per_epoch=self.steps_per_epoch.value, validate_every=self.steps_per_epoch.value,
            accumulation=self.accumulation.value, lr=self.lr.value, working_size=self.working_size.value,
            network={"width": self.width.value} if self.start_from.value == NEW else {}, out_dir=out_dir,
            **scaled_augmentation(self.augmentation.value))

    def start_model(self):
        """A private copy of the starting network (None: a new one), the cached models untouched; a network is
        fine-tuned at the size it works at, so the working size follows it."""
        if self.start_from.value == NEW:
            return None
        path = "default" if self.start_from.value == BUNDLED else self.weights.line_edit.value.strip()
        if self.start_from.value == WEIGHTS_FILE and not Path(path).is_file():
            raise InputError(f"Weights file not found: '{path}'")
        model = copy.deepcopy(resolve_model(path))
        if model is not None:
            self.working_size.value = model.config.input_long_side
        return model
