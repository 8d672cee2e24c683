"""Before and after fine-tuning, judged as Register judges a result: one function for the dock and the CLI.

Each validation pair of sections (the dock's layer pairs, the CLI's held-out table pairs) is registered by
the registration engine itself (:func:`~napari_histoaffine.registration.pipeline.register`, default
options, the network being judged) — once as Register runs it and once with the refinement off (rotation
and the network alone, what training changes most directly) — with the network a run started from
(``before``) and the network it offers (``after``). The figure of a pair is the median rTRE of its
landmarks, computed as Register's landmark table does; without landmarks it is the verdict's similarity
(``ncc_after``, with its confidence). A fine-tuned network *validates worse* when Register's summary figure,
as shown (rTRE to 4 decimals, NCC to 3), got worse: a larger median rTRE over the pairs with landmarks,
else a lower mean NCC.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import transforms
from ..errors import InputError
from ..evaluation.metrics import image_diagonal, landmark_stats
from ..files.images import read_pair
from ..files.tables import read_landmarks, read_pairs_table
from ..progress import STOP, Progress
from ..registration.options import DEFAULT_WORKING_SIZE, RegistrationOptions
from ..registration.pipeline import register
from .data import DataSource, SectionArrays, is_held_out

REGISTER, ALONE = "Register", "network alone"
PIPELINES = {REGISTER: {}, ALONE: {"refine": False}}  # RegistrationOptions changes of each pipeline judged


@dataclass(frozen=True)
class Figure:
    """What Register reports for one registration: median rTRE (None without landmarks), NCC and confidence."""

    rtre: float | None
    ncc: float
    confidence: float

    def text(self) -> str:
        return f"rTRE {self.rtre:.4f}" if self.rtre is not None else f"NCC {self.ncc:.3f} ({self.confidence:.0%})"


@dataclass(frozen=True)
class PairFigures:
    """One validation pair's figures, per pipeline, with the starting and with the fine-tuned network."""

    name: str
    before: dict
    after: dict

    def line(self) -> str:
        parts = [f"{p} rTRE {self.before[p].rtre:.4f} → {self.after[p].rtre:.4f}"
                 if self.before[p].rtre is not None and self.after[p].rtre is not None
                 else f"{p} {self.before[p].text()} → {self.after[p].text()}" for p in PIPELINES]
        return f"{self.name}: " + " · ".join(parts)


@dataclass(frozen=True)
class Judgement:
    """The figures of every validation pair, their summaries and whether the fine-tuned network is worse."""

    pairs: tuple

    def change(self, pipeline: str = REGISTER) -> tuple[str, float, float, int]:
        """(measure, before, after, pairs): median rTRE over the pairs with landmarks, else mean NCC."""
        with_landmarks = [p for p in self.pairs if p.before[pipeline].rtre is not None]
        if with_landmarks:
            return ("median rTRE", float(np.median([p.before[pipeline].rtre for p in with_landmarks])),
                    float(np.median([p.after[pipeline].rtre for p in with_landmarks])), len(with_landmarks))
        return ("mean NCC", float(np.mean([p.before[pipeline].ncc for p in self.pairs])),
                float(np.mean([p.after[pipeline].ncc for p in self.pairs])), len(self.pairs))

    def shown(self, pipeline: str = REGISTER) -> tuple[str, float, float, int]:
        """:meth:`change` rounded as shown (rTRE to 4 decimals, NCC to 3): what the user compares."""
        measure, before, after, n = self.change(pipeline)
        digits = 4 if measure == "median rTRE" else 3
        return measure, round(before, digits), round(after, digits), n

    @property
    def worse(self) -> bool:
        """Whether Register's figure, as shown, got worse with the fine-tuned network."""
        measure, before, after, _ = self.shown(REGISTER)
        return after > before if measure == "median rTRE" else after < before

    def summary(self, pipeline: str = REGISTER) -> str:
        """E.g. ``Register: median rTRE 0.0031 → 0.0028 on 3 pairs``."""
        measure, before, after, n = self.shown(pipeline)
        digits = 4 if measure == "median rTRE" else 3
        return f"{pipeline}: {measure} {before:.{digits}f} → {after:.{digits}f} on {n} pair{'s' * (n != 1)}"

    def lines(self) -> list[str]:
        """Per pair, then the two summaries (Register, network alone)."""
        return [p.line() for p in self.pairs] + [self.summary(p) for p in PIPELINES]

    def verdict(self) -> str:
        """One sentence: better, unchanged or worse than the starting network, by Register's figure."""
        _, before, after, _ = self.shown(REGISTER)
        if self.worse:
            return f"The fine-tuned network validates worse than the one it started from ({self.summary()})."
        word = "no worse than" if before == after else "better than"
        return f"The fine-tuned network validates {word} the one it started from ({self.summary()})."

    def to_dict(self) -> dict:
        return {"pairs": [{"name": p.name, "before": {k: dataclasses.asdict(v) for k, v in p.before.items()},
                           "after": {k: dataclasses.asdict(v) for k, v in p.after.items()}} for p in self.pairs],
                "summary": {p: self.summary(p) for p in PIPELINES}, "worse": self.worse}


def pair_figure(section: SectionArrays, options: RegistrationOptions) -> Figure:
    """Register ``section`` with ``options`` as Register does and read its figures (landmarks: ``(x, y)``
    full-resolution pixels; rTRE = TRE / the fixed image's diagonal, its median over the landmarks)."""
    moving_full, fixed_full = section.full_shapes or (None, None)
    result = register(section.moving, section.fixed, options, moving_full_shape=moving_full,
                      fixed_full_shape=fixed_full)
    rtre = None
    if section.moving_landmarks_xy is not None and section.fixed_landmarks_xy is not None:
        moved = transforms.apply_to_points(result.matrix, np.asarray(section.moving_landmarks_xy, float))
        try:
            rtre = landmark_stats(moved, section.fixed_landmarks_xy, image_diagonal(result.fixed_shape)).rtre_median
        except InputError:  # landmark sets of different lengths: judged by the similarity instead
            rtre = None
    return Figure(rtre, float(result.ncc_after), float(result.verdict.confidence))


def judge_steps(sections: Sequence[SectionArrays], before, after, options: RegistrationOptions | None = None
                ) -> Generator[Progress, object, Judgement | None]:
    """Every pair registered with ``before`` and ``after`` (anything ``RegistrationOptions.model`` takes), as
    Register and as the network alone; yields a Progress before each registration (STOP: returns None)."""
    options = options or RegistrationOptions()
    total = len(sections) * 2 * len(PIPELINES)
    pairs, done = [], 0
    for section in sections:
        figures = {}
        for when, model in (("before", before), ("after", after)):
            figures[when] = {}
            for pipeline, change in PIPELINES.items():
                message = f"as Register: {section.name}, {pipeline}, {when} fine-tuning"
                if (yield Progress("judging", done / total, message)) == STOP:
                    return None
                figures[when][pipeline] = pair_figure(section, dataclasses.replace(options, model=model, **change))
                done += 1
        pairs.append(PairFigures(section.name, figures["before"], figures["after"]))
    return Judgement(tuple(pairs))


def validation_sections(sources: Sequence[DataSource], working_size: int = DEFAULT_WORKING_SIZE
                        ) -> list[SectionArrays]:
    """The validation pairs of ``sources`` as Register and ``histoaffine evaluate`` read them: a layer source's
    sections (read by the caller at Register's working size) and a table's held-out rows (the level that
    covers ``working_size``, landmarks where the table gives both files)."""
    sections = []
    for source in sources:
        if source.kind == "layers":
            sections.append(source.sections)
        elif source.kind == "table":
            for row in read_pairs_table(source.path):
                if not (is_held_out(row.moving_image, source.holdout) or is_held_out(row.fixed_image, source.holdout)):
                    continue
                moving, fixed = read_pair(row.moving_image, row.fixed_image, working_size)
                landmarks = (None, None)
                if all(p and Path(p).is_file() for p in (row.moving_landmarks, row.fixed_landmarks)):
                    landmarks = (read_landmarks(row.moving_landmarks), read_landmarks(row.fixed_landmarks))
                sections.append(SectionArrays(row.case, moving.data, fixed.data, (moving.full_shape, fixed.full_shape),
                                              *landmarks))
    return sections


def judge_outcome_steps(outcome, sections: Sequence[SectionArrays], before
                        ) -> Generator[Progress, object, Judgement | None]:
    """The run's offered network (its best checkpoint, as a file: what Save and Register use) against
    ``before``; None when nothing was trained or there is no pair to judge on."""
    best = getattr(outcome, "best_path", None)
    if outcome is None or not outcome.steps or not sections or best is None or not Path(best).is_file():
        return None
    return (yield from judge_steps(sections, before, str(best)))
