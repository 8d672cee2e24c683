"""The one progress protocol of every long operation (registration, series, batch, training, slide warp).

A long operation is a generator: it yields :class:`Progress` items while it works and returns its
result. Callers drive it with :func:`run_steps` (CLI, tests) or wrap it in napari's ``thread_worker``
(widgets). To cancel, stop asking for items and ``close()`` the generator: its ``finally`` clauses
run at once (a slide warp removes its half-written file). A worker's ``quit()`` only leaves the loop
at the next yield and leaves the generator to the garbage collector, so a widget whose generator
holds a file closes it itself when the worker reports it was aborted.

An operation that can end early *with* a result (training keeps what it has trained) also takes
:data:`STOP` sent in answer to a progress item (``steps.send(STOP)``, a ``thread_worker``'s ``send``):
it winds up at that point and returns what it has.
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

STOP = "stop"  # sent into a step generator: end at this point and return the result so far


@dataclass(frozen=True)
class Progress:
    """One progress report: the stage that is running and the overall fraction done (0–1)."""

    stage: str
    fraction: float
    message: str = ""


def run_steps(steps: Generator[Progress, None, object],
              on_progress: Callable[[Progress], None] | None = None) -> object:
    """Drive a step generator to its end, reporting each progress item; returns its result."""
    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(item)
