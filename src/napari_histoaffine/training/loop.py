"""The training loop, as in the method paper: one generator for ``histoaffine train`` and the Fine-tune dock.

One pair per forward pass, ``loss.backward()`` after each pair and an optimizer step every
``accumulation`` pairs; Adam with an exponential learning-rate decay per epoch. Validation runs
every ``validate_every`` steps; the best network so far and the last one are checkpointed.

:func:`train_steps` yields a :class:`TrainingUpdate` (a :class:`~napari_histoaffine.progress.Progress`)
before every pair, after every step and around validations, and returns a :class:`TrainingOutcome`.
Answering an update with :data:`~napari_histoaffine.progress.STOP` stops before the next pair: the
last checkpoint is saved and the outcome returned (``stopped``); closing the generator saves the last
checkpoint too. :func:`train` runs it to the end.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import transforms
from ..errors import InputError
from ..progress import STOP, Progress, run_steps
from ..registration.network import AffineNet, NetworkConfig
from ..registration.weights import load_model, read_model_metadata
from .config import TrainingConfig
from .data import TrainingData
from .records import RunFiles, optimizer_path, plot_losses, read_log, save_checkpoint, write_log
from .samples import Sample, make_sample, similarity, training_loss


@dataclass(frozen=True, kw_only=True)
class TrainingUpdate(Progress):
    """Progress of :func:`train_steps`; ``stage`` is "validating", "training", "stopped" or "finished"."""

    step: int
    total_steps: int
    loss: float | None = None          # of the step just made, on step-end and final updates
    validation: float | None = None    # mean NCC after the network on the validation samples, when just validated
    seconds: float = 0.0
    eta: float | None = None
    lr: float | None = None
    metrics: dict = field(default_factory=dict)
    pair: int | None = None            # the pair of the step about to be trained (1 … accumulation)


@dataclass
class TrainingOutcome:
    """How a run ended: the network (after its last step), validations, history and the run's files."""

    model: AffineNet
    steps: int
    total_steps: int
    stopped: bool
    seconds: float
    initial_validation: dict
    final_validation: dict
    best_validation: float | None
    best_step: int | None
    history: list
    best_path: Path | None = None
    last_path: Path | None = None
    log_path: Path | None = None
    plot_path: Path | None = None
    steps_per_second: float | None = None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def _sample_order(n: int, seed: int, index: int) -> int:
    cycle, position = divmod(index, n)
    return int(np.random.default_rng([seed, 7, cycle]).permutation(n)[position])


def validation_samples(config: TrainingConfig, train_pairs: list, validation_pairs: list) -> list[Sample]:
    """Fixed validation samples: the validation pairs as at inference, else seeded synthetic samples."""
    if validation_pairs:
        return [make_sample(p, config, None) for p in validation_pairs]
    return [make_sample(train_pairs[i % len(train_pairs)], config, np.random.default_rng([config.seed, 99, i]))
            for i in range(max(1, config.validation_samples))]


@torch.inference_mode()
def validate(model: AffineNet, samples: list[Sample], config: TrainingConfig | None = None) -> dict:
    """Mean NCC after the network; mean rTRE (median per pair) where landmarks exist; synthetic error where known."""
    config = TrainingConfig() if config is None else config
    model.eval()
    nccs, rtres, errors = [], [], []
    for s in samples:
        shape = s.fixed.shape[-2:]
        theta = model(s.moving, s.fixed)
        nccs.append(float(similarity(s, theta, config)))
        matrix = transforms.from_theta(theta[0].numpy(), shape, shape)
        pair = s.pair
        if s.truth is not None:
            h, w = shape
            grid = np.stack(np.meshgrid(np.linspace(0, w - 1, 5), np.linspace(0, h - 1, 5)), -1).reshape(-1, 2)
            diff = transforms.apply_to_points(matrix, grid) - transforms.apply_to_points(s.truth, grid)
            errors.append(float(np.linalg.norm(diff, axis=1).mean() / np.hypot(h, w)))
        if pair is not None and not s.augmented and pair.moving_landmarks is not None:
            full = transforms.compose(pair.pose, matrix, pair.fixed_to_original)
            moved = transforms.apply_to_points(full, pair.moving_landmarks)
            n = min(len(moved), len(pair.fixed_landmarks))
            rtres.append(float(np.median(np.linalg.norm(moved[:n] - pair.fixed_landmarks[:n], axis=1))
                               / pair.fixed_diagonal))
    model.train()
    return {"val_ncc": float(np.mean(nccs)) if nccs else None,
            "val_rtre": float(np.mean(rtres)) if rtres else None,
            "val_error": float(np.mean(errors)) if errors else None}


def new_network(config: TrainingConfig) -> AffineNet:
    """The network a run from scratch starts from (seeded: the same config gives the same weights)."""
    torch.manual_seed(config.seed)
    return AffineNet(NetworkConfig.from_dict({**config.network, "input_long_side": config.working_size}))


class _Run:
    """One run's network, optimizer, history and checkpoints: the state :func:`train_steps` moves forward."""

    def __init__(self, config: TrainingConfig, pairs, validation, model, resume):
        if isinstance(pairs, TrainingData):
            validation = pairs.validation if validation is None else validation
            pairs = pairs.train
        self.pairs = list(pairs)
        if not self.pairs:
            raise InputError("no training pairs")
        self.config = config
        self.files = RunFiles.in_folder(config.out_dir) if config.out_dir else None
        self.start_step, self.best_value, self.best_step, self.history = 0, None, None, []
        optim_state = None
        if resume is not None:
            model = load_model(resume)
            extra = read_model_metadata(resume)["extra"]
            self.start_step = int(extra.get("step", 0))
            self.best_value, self.best_step = extra.get("best_validation"), extra.get("best_step")
            if optimizer_path(resume).is_file():
                optim_state = torch.load(optimizer_path(resume), weights_only=True)
            if self.files is not None:
                self.history = read_log(self.files.log, self.start_step)
        elif model is None:
            model = new_network(config)
        if model.config.input_long_side != config.working_size:
            raise InputError(f"the network works at {model.config.input_long_side} px: train it at that working "
                             f"size, not {config.working_size}")
        model.train()
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=config.gamma)
        if optim_state is not None:
            self.optimizer.load_state_dict(optim_state["optimizer"])
            self.scheduler.load_state_dict(optim_state["scheduler"])
        self.total = config.total_steps(len(self.pairs))
        self.per_epoch = config.epoch_steps(len(self.pairs))
        self.accumulation = max(1, int(config.accumulation))
        self.samples = validation_samples(config, self.pairs, list(validation or []))
        self.clock = time.perf_counter()
        self.seconds_offset = self.history[-1]["seconds"] if self.history and self.history[-1].get("seconds") else 0.0
        self.step = self.start_step
        self.last_loss = None
        self.last_validation: dict = {}

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def update(self, stage: str, *, loss=None, metrics=None, pair=None) -> TrainingUpdate:
        """The progress report now; its message carries the last step's loss and the last validation."""
        elapsed = time.perf_counter() - self.clock
        done = self.step - self.start_step
        eta = elapsed / done * (self.total - self.step) if done > 0 else None
        position = self.step + ((pair - 1) / self.accumulation if pair else 0)
        parts = [f"{stage} · step {self.step}/{self.total}"] + ([f"pair {pair}/{self.accumulation}"] if pair else [])
        if self.last_loss is not None:
            parts.append(f"loss {self.last_loss:.4f}")
        if self.last_validation.get("val_ncc") is not None:
            parts.append(f"last validation NCC {self.last_validation['val_ncc']:.3f}")
        if self.last_validation.get("val_rtre") is not None:
            parts.append(f"rTRE {self.last_validation['val_rtre']:.4f}")
        if eta is not None and stage in ("training", "validating"):
            parts.append(f"{_duration(eta)} left")
        metrics = dict(metrics or {})
        return TrainingUpdate(stage=stage, fraction=min(1.0, position / self.total) if self.total else 1.0,
                              message=" · ".join(parts), step=self.step, total_steps=self.total, loss=loss,
                              validation=metrics.get("val_ncc"), seconds=elapsed, eta=eta, lr=self.lr,
                              metrics=metrics, pair=pair)

    def validate(self) -> dict:
        """Validate now; a new best is checkpointed."""
        metrics = validate(self.model, self.samples, self.config)
        self.last_validation = metrics
        value = metrics["val_ncc"]
        if self.best_value is None or (value is not None and value > self.best_value):
            self.best_value, self.best_step = value, self.step
            if self.files is not None:
                save_checkpoint(self.files.best, self.model, self.optimizer, self.scheduler, self.config, self.step,
                                {"validation": metrics, "best_validation": value, "best_step": self.step})
        return metrics

    def record_initial(self, metrics: dict) -> None:
        """The history's row of the starting step (a resumed run completes the row its log ends with)."""
        if self.history and self.history[-1]["step"] == self.start_step:
            self.history[-1].update({k: v for k, v in metrics.items() if v is not None})
        else:
            self.history.append({"step": self.start_step, "loss": None, "lr": self.lr, "seconds": 0.0, **metrics})

    def train_pair(self, k: int) -> float:
        """Forward and backward pass of the ``k``-th pair of this step; its loss."""
        index = self.step * self.accumulation + k
        rng = np.random.default_rng([self.config.seed, index])
        sample = make_sample(self.pairs[_sample_order(len(self.pairs), self.config.seed, index)], self.config, rng)
        loss, _ = training_loss(self.model, sample, self.config)
        (loss / self.accumulation).backward()
        return float(loss.detach())

    def optimizer_step(self, losses: list) -> dict:
        """The optimizer step after the step's pairs; the history row it adds."""
        lr = self.lr
        self.optimizer.step()
        self.step += 1
        if self.step % self.per_epoch == 0:
            self.scheduler.step()
        self.last_loss = float(np.mean(losses))
        row = {"step": self.step, "loss": self.last_loss, "lr": lr,
               "seconds": self.seconds_offset + time.perf_counter() - self.clock}
        self.history.append(row)
        return row

    def validation_due(self) -> bool:
        return self.step % max(1, self.config.validate_every) == 0 or self.step == self.total

    def save_last(self, metrics: dict) -> None:
        """The last checkpoint, the log and the loss plot."""
        if self.files is None:
            return
        extra = {"validation": metrics, "best_validation": self.best_value, "best_step": self.best_step}
        save_checkpoint(self.files.last, self.model, self.optimizer, self.scheduler, self.config, self.step, extra)
        write_log(self.files.log, self.history)
        plot_losses(self.files.plot, self.history)

    def outcome(self, stopped: bool, initial: dict, final: dict, seconds: float) -> TrainingOutcome:
        files = self.files
        trained = self.step - self.start_step
        return TrainingOutcome(
            model=self.model, steps=self.step, total_steps=self.total, stopped=stopped, seconds=seconds,
            initial_validation=initial, final_validation=final, best_validation=self.best_value,
            best_step=self.best_step, history=self.history, best_path=files.best if files else None,
            last_path=files.last if files else None, log_path=files.log if files else None,
            plot_path=files.plot if files else None,
            steps_per_second=trained / seconds if seconds > 0 and trained > 0 else None)


def train_steps(config: TrainingConfig, pairs, *, validation: list | None = None, model: AffineNet | None = None,
                resume=None) -> Generator[TrainingUpdate, object, TrainingOutcome]:
    """Train (from scratch, from ``model``, or resuming the checkpoint ``resume``), yielding progress.

    ``pairs`` is a list of :class:`~napari_histoaffine.training.data.TrainingPair` or a
    :class:`~napari_histoaffine.training.data.TrainingData` (its validation pairs are used unless
    ``validation`` is given). Stopping and closing: see the module docstring. Nothing is printed.
    """
    run = _Run(config, pairs, validation, model, resume)
    metrics, stop_requested, stopped = {}, False, False
    try:
        stop_requested |= (yield run.update("validating")) == STOP
        initial = run.validate()
        run.record_initial(initial)
        stop_requested |= (yield run.update("training", metrics=initial)) == STOP
        metrics = initial
        while run.step < run.total and not stopped:
            run.optimizer.zero_grad(set_to_none=True)
            losses = []
            for k in range(run.accumulation):
                if stop_requested or (yield run.update("training", pair=k + 1)) == STOP:
                    stopped = True
                    break
                losses.append(run.train_pair(k))
            if stopped:
                break
            row = run.optimizer_step(losses)
            metrics = {}
            if run.validation_due():
                stop_requested |= (yield run.update("validating")) == STOP
                metrics = run.validate()
                row.update(metrics)
                run.save_last(metrics)
            stop_requested |= (yield run.update("training", loss=row["loss"], metrics=metrics)) == STOP
    except GeneratorExit:
        run.save_last(metrics)
        raise
    if stopped or not metrics:
        run.save_last(metrics)
    final = metrics if metrics else validate(run.model, run.samples, config)  # for the record: no new best here
    seconds = time.perf_counter() - run.clock
    outcome = run.outcome(stopped, initial, final, seconds)
    yield run.update("stopped" if stopped else "finished", loss=run.history[-1].get("loss"), metrics=final)
    return outcome


def train(config: TrainingConfig, pairs, *, validation: list | None = None, model: AffineNet | None = None,
          resume=None, on_update: Callable[[TrainingUpdate], None] | None = None) -> TrainingOutcome:
    """:func:`train_steps` run to its end, each update passed to ``on_update``."""
    return run_steps(train_steps(config, pairs, validation=validation, model=model, resume=resume), on_update)
