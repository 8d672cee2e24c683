"""What a registration does: one options object for the CLI, batches, series and the widgets."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .network import AffineNet

DEFAULT_WORKING_SIZE = 288


@dataclass(frozen=True)
class RegistrationOptions:
    """How to register a pair (imports no torch, so a command line can build it before any work).

    ``model`` is ``"default"`` (the shipped weights, when the package has them), a weights file, a
    loaded network, or ``None`` (pose search and refinement only); ``refine`` runs the intensity
    refinement (off: the paper's method); ``search_mirror`` also tries mirrored poses;
    ``working_size`` is the long side of the working images in pixels; ``top_k`` is how many
    distinct poses of the first search go on to the race.
    """

    model: str | Path | AffineNet | None = "default"
    refine: bool = True
    search_mirror: bool = True
    working_size: int = DEFAULT_WORKING_SIZE
    top_k: int = 4
