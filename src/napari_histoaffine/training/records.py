"""What a training run leaves in its folder: checkpoints (weights + optimizer state), log.csv and loss.png.

Every file is written atomically: a run stopped or killed mid-write never leaves half a file.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..files.atomic import atomic_write
from ..registration.weights import save_model

LOG_COLUMNS = ("step", "loss", "val_ncc", "val_rtre", "val_error", "lr", "seconds")


@dataclass(frozen=True)
class RunFiles:
    """The files of a run folder."""

    best: Path      # the network at the best validation so far
    last: Path      # the network after the last step saved (resume from here)
    log: Path
    plot: Path

    @classmethod
    def in_folder(cls, folder) -> "RunFiles":
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder / "model.safetensors", folder / "last.safetensors", folder / "log.csv", folder / "loss.png")


def optimizer_path(checkpoint) -> Path:
    """Where the optimizer and scheduler state of ``checkpoint`` lives (next to its weights)."""
    return Path(checkpoint).with_suffix(".optim.pt")


def save_checkpoint(path: Path, model, optimizer, scheduler, config, step: int, extra: dict) -> None:
    """The weights (with the training config, step and ``extra`` as metadata) and the optimizer state."""
    save_model(path, model, extra={"training": config.to_dict(), "step": step, **extra})
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}, buffer)
    with atomic_write(optimizer_path(path), "wb") as fh:
        fh.write(buffer.getvalue())


def _fmt(v) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def write_log(path: Path, history: list) -> None:
    with atomic_write(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(LOG_COLUMNS)
        for row in history:
            writer.writerow([_fmt(row.get(c)) for c in LOG_COLUMNS])


def read_log(path: Path, up_to_step: int) -> list:
    """The rows of a run's log up to ``up_to_step`` (a resumed run continues the history of its checkpoint)."""
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out = {"step": int(row["step"])}
            for c in LOG_COLUMNS[1:]:
                out[c] = float(row[c]) if row.get(c) not in (None, "") else None
            if out["step"] <= up_to_step:
                rows.append(out)
    return rows


def plot_losses(path: Path, history: list) -> None:
    """Training loss (and a running mean) and validation −NCC against the optimizer step, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    rows = [r for r in history if r.get("loss") is not None]
    if rows:
        steps = np.array([r["step"] for r in rows])
        loss = np.array([r["loss"] for r in rows])
        ax.plot(steps, loss, color="0.75", lw=0.8, label="training loss (−NCC)")
        k = max(1, len(loss) // 20)
        if k > 1:
            ax.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), color="C0", label=f"mean of {k}")
    val = [r for r in history if r.get("val_ncc") is not None]
    if val:
        ax.plot([r["step"] for r in val], [-r["val_ncc"] for r in val], "o-", color="C3", label="validation −NCC")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png")
