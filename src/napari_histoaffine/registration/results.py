"""Plain dataclasses that carry registration results to every caller (CLI, napari, tests): pose, verdict, masks."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_VERDICT = "no verdict: a transform set from outside"


@dataclass(frozen=True)
class Pose:
    """A rigid starting pose found by the rotation search: moving → fixed at working resolution."""

    angle_deg: float
    flipped: bool
    score: float
    matrix: np.ndarray = field(repr=False, compare=False)
    scale: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """How far a registration can be trusted, judged without landmarks (see :mod:`.verdict`).

    ``confidence`` is 0–1; ``flagged`` asks a person to check the result, ``reason`` says why in
    words; ``alternative`` is the index (in the result's candidates) of the pose to try instead: the
    pose the reason names when it names one ("a pose turned by 78° fits better"), else the best
    different pose, the other mirror state first; or ``None``; ``alternative_label`` says which in
    words ("the other mirror state", "the pose turned by 78°"); ``margin`` is the similarity lead
    over the best different pose.
    """

    confidence: float
    flagged: bool
    reason: str
    alternative: int | None
    margin: float
    alternative_label: str = ""

    @property
    def headline(self) -> str:
        """The verdict in words for every front end: ``confident (97 %)`` or ``check this result (42 %): why``."""
        percent = f"{100 * self.confidence:.0f} %"
        return f"check this result ({percent}): {self.reason}" if self.flagged else f"confident ({percent})"


PIECES_NOTE = "; by the largest piece of tissue of each image, the others left out"


@dataclass(frozen=True)
class TissueMasks:
    """The tissue masks the registration used, at working resolution, with working → full-resolution matrices."""

    moving: np.ndarray = field(repr=False)
    fixed: np.ndarray = field(repr=False)
    moving_to_full: np.ndarray = field(repr=False)
    fixed_to_full: np.ndarray = field(repr=False)


@dataclass
class RegistrationResult:
    """Outcome of :func:`napari_histoaffine.registration.pipeline.register`.

    ``matrix`` maps full-resolution moving pixels to full-resolution fixed pixels, in the
    convention of :mod:`napari_histoaffine.transforms` (``(x, y)`` = (column, row)).
    ``rotation_deg`` and ``flipped`` are the result's own (the rotation closest to ``matrix``), not
    those of the candidate it started from.
    """

    matrix: np.ndarray
    moving_shape: tuple[int, int]
    fixed_shape: tuple[int, int]
    stages: list[str]
    timings: dict[str, float]
    ncc_before: float
    ncc_after: float
    rotation_deg: float
    flipped: bool
    candidates: list[Pose]
    tissue_overlap: float = 0.0
    masks: TissueMasks | None = field(default=None, repr=False)
    verdict: Verdict | None = None
    largest_pieces: bool = False  # registered by the largest piece of tissue of each image, the others left out

    @property
    def seconds(self) -> float:
        """Registration time: all stages, images already decoded."""
        return float(sum(self.timings.values()))

    @property
    def headline(self) -> str:
        """The verdict's headline (:attr:`Verdict.headline`), or that there is none (a transform read from a file)."""
        if self.verdict is None:
            return NO_VERDICT
        return self.verdict.headline + (PIECES_NOTE if self.largest_pieces else "")

    def to_dict(self) -> dict:
        """JSON-ready description (the transform file format of the CLI and the widget)."""
        return {
            "matrix": np.asarray(self.matrix).tolist(),
            "convention": "3x3 homogeneous; maps moving (x=column, y=row) pixels to fixed pixels; "
                          "full resolution; pixel centres at integer coordinates",
            "moving_shape": list(self.moving_shape),
            "fixed_shape": list(self.fixed_shape),
            "stages": list(self.stages),
            "timings": dict(self.timings),
            "ncc_before": self.ncc_before,
            "ncc_after": self.ncc_after,
            "rotation_deg": self.rotation_deg,
            "flipped": self.flipped,
            "tissue_overlap": self.tissue_overlap,
            "largest_pieces": self.largest_pieces,
            **({"confidence": self.verdict.confidence, "flagged": self.verdict.flagged, "verdict": self.verdict.reason}
               if self.verdict is not None else {}),
            "candidates": [{"angle_deg": p.angle_deg, "flipped": p.flipped, "score": p.score} for p in self.candidates],
        }
