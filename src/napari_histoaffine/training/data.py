"""Data sources → training and validation pairs: one spec (:class:`DataSource`) and one function for CLI and dock.

Real pairs (pairs tables, two sections in memory) are posed once each by the rotation search, exactly
as at inference; self pairs (folders of images, scikit-image's immunohistochemistry sample) pair each
image with a re-stained, transformed copy of itself, optionally as random crops. Phantom specimens
(:func:`phantom_pair_steps`) pair their stains with exact targets from their landmarks.

Which pairs validate (:func:`training_data_steps`, the same rule for every front end):

* a pairs-table or folder entry whose file name contains a ``holdout`` substring validates only: it is
  never trained on, and a table's pair is posed as the network alone meets it (the search's first
  pose, no target);
* a pair of sections in memory (the dock's layer pair: the sections being fine-tuned for, which cannot
  be held out) trains and validates, so their landmarks give rTRE;
* every other pair trains only; when no pair validates, the loop validates on seeded synthetic
  samples of the training pairs.
"""
from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from .. import transforms
from ..errors import InputError
from ..evaluation.metrics import image_diagonal
from ..files.images import read_image
from ..files.tables import Pair, read_landmarks, read_pairs_table
from ..progress import STOP, Progress
from ..registration.features import StructurePyramid
from ..registration.pose import search_pose
from ..registration.grayscale import to_float
from ..registration.preprocess import prepare_pair, resample
from ..registration.refine import refine_affine
from .config import network_input_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
VALIDATE_EVERY = 10  # phantom specimens 9, 19, 29, … validate only
POSE_CACHE_PAIRS = 128  # posed table pairs kept for the next run (a few MB each at the working size)
Teacher = Literal["refinement", "landmarks"]  # where a training pair's target comes from (see pose_training_pair)


@dataclass
class TrainingPair:
    """A source of training samples: moving and fixed pixels (RGB or gray) and the pose between them.

    ``pose`` maps moving working pixels to fixed working pixels (the prepared images of
    ``moving``/``fixed`` at ``factor``): where the network starts. ``target`` is the best known
    moving → fixed matrix, the network's goal: the identity for self pairs (``moving is fixed``, a
    per-sample factor that fits ``working_size``), the iterative NCC refinement's result for real
    pairs (a teacher that needs no landmarks), ``None`` where unknown. Landmarks (working pixels of
    moving, original pixels of fixed) allow rTRE in validation.
    """

    name: str
    moving: np.ndarray
    fixed: np.ndarray
    pose: np.ndarray = field(default_factory=transforms.identity, repr=False)
    factor: float | None = None           # None: fit the long side to working_size at sample time
    random_crop: bool = False
    moving_landmarks: np.ndarray | None = field(default=None, repr=False)   # working moving pixels
    fixed_landmarks: np.ndarray | None = field(default=None, repr=False)    # original fixed pixels
    fixed_to_original: np.ndarray | None = field(default=None, repr=False)  # working fixed → original fixed
    fixed_diagonal: float | None = None
    target: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.target is None and self.self_pair:
            self.target = transforms.identity()

    @property
    def self_pair(self) -> bool:
        return self.moving is self.fixed


@dataclass
class TrainingData:
    """The pairs to train on and the pairs to validate on (empty: synthetic validation samples)."""

    train: list
    validation: list


@dataclass
class SectionArrays:
    """Two sections in memory (e.g. napari layers at a reduced level) and their landmarks, if any."""

    name: str
    moving: np.ndarray
    fixed: np.ndarray
    full_shapes: tuple | None = None               # (moving, fixed) full-resolution (rows, cols); None: the arrays'
    moving_landmarks_xy: np.ndarray | None = None  # (x, y) pixels of the full-resolution moving section
    fixed_landmarks_xy: np.ndarray | None = None


@dataclass(frozen=True)
class DataSource:
    """One source of training data, as ``histoaffine train`` and the Fine-tune dock describe it."""

    kind: Literal["table", "folder", "ihc", "layers", "phantoms"]
    path: str | None = None                  # "table": an ANHIR pairs table; "folder": a folder of images
    sections: SectionArrays | None = None    # "layers": the two sections
    holdout: tuple[str, ...] = ()            # "table"/"folder": file-name substrings of the pairs that validate only
    crops: bool = True                       # "folder"/"ihc": add a random-crop variant of every image
    teacher: Teacher = "refinement"          # "table": the training pairs' targets (landmarks: their affine fit)
    count: int = 0                           # "phantoms": specimens generated (development families only)
    seed: int = 0                            # "phantoms": the dataset seed


def resize_float(image: np.ndarray, factor: float) -> np.ndarray:
    """Any image as float in [0, 1], colour kept, resized as the preprocessing does."""
    return resample(to_float(image), factor)[0]


def ihc_pairs(crops: bool = True) -> list[TrainingPair]:
    """scikit-image's immunohistochemistry sample as a self pair (plus a random-crop variant)."""
    from skimage import data

    image = to_float(data.immunohistochemistry())
    pairs = [TrainingPair("ihc", image, image)]
    if crops:
        pairs.append(TrainingPair("ihc-crops", image, image, random_crop=True))
    return pairs


def folder_pairs(folder, working_size: int | None = None, crops: bool = True,
                 holdout: Sequence[str] = ()) -> list[TrainingPair]:
    """Every image in ``folder`` (but those with a ``holdout`` substring in the name) as a self pair.

    Images are kept at up to twice the working size (default: the network's), for sharp crops.
    """
    working_size = working_size or network_input_size()
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"training folder not found: {root}")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                   and not is_held_out(p, holdout))
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) left in training folder {root}")
    pairs = []
    for path in files:
        level = read_image(path, max_long_side=2 * working_size)
        image = resize_float(level.data, min(1.0, 2 * working_size / max(level.data.shape[:2])))
        pairs.append(TrainingPair(path.name, image, image, random_crop=False))
        if crops:
            pairs.append(TrainingPair(path.name + "-crops", image, image, random_crop=True))
    return pairs


def pose_training_pair(moving, fixed, moving_landmarks_xy=None, fixed_landmarks_xy=None,
                       working_size: int | None = None, *, name: str = "pair", full_shapes=None,
                       teacher: Teacher = "refinement") -> TrainingPair:
    """A pair to train on, posed once.

    ``teacher="refinement"``: the NCC refinement of the search's candidates is its ``target`` (a teacher
    that needs no landmarks) and the refinement's starting candidate its pose. ``teacher="landmarks"``
    (landmarks of exact correspondence: phantoms, generated cases): their least-squares affine is both
    target and pose, and the training's residual misalignment stands in for the search's error.
    Landmarks ``(x, y)`` (used when both are given) are pixels of the full-resolution images, whose
    ``(rows, cols)`` are ``full_shapes`` ``(moving, fixed)`` when the arrays are reduced levels.
    """
    if teacher == "landmarks" and (moving_landmarks_xy is None or fixed_landmarks_xy is None):
        raise InputError(f"{name}: landmark targets need landmarks of both images")
    return _posed_pair(moving, fixed, moving_landmarks_xy, fixed_landmarks_xy, working_size, name, full_shapes,
                       teacher)


def pose_validation_pair(moving, fixed, moving_landmarks_xy=None, fixed_landmarks_xy=None,
                         working_size: int | None = None, *, name: str = "pair", full_shapes=None) -> TrainingPair:
    """A held-out pair, posed as the network alone meets it at inference: the search's first pose, no target.

    Arguments as :func:`pose_training_pair`.
    """
    return _posed_pair(moving, fixed, moving_landmarks_xy, fixed_landmarks_xy, working_size, name, full_shapes, None)


def _posed_pair(moving, fixed, moving_landmarks_xy, fixed_landmarks_xy, working_size, name, full_shapes,
                teacher: Teacher | None) -> TrainingPair:
    """The pair at the working size, posed and with the ``teacher``'s target (None: the search's first pose, no target)."""
    working_size = working_size or network_input_size()
    moving, fixed = np.asarray(moving), np.asarray(fixed)
    moving_full, fixed_full = full_shapes or (moving.shape, fixed.shape)
    prepared_moving, prepared_fixed = prepare_pair(moving, fixed, working_size)
    fixed_to_original = transforms.compose(prepared_fixed.to_input, transforms.resample_matrix(fixed.shape, fixed_full))
    moving_lm = fixed_lm = None
    if moving_landmarks_xy is not None and fixed_landmarks_xy is not None:
        to_full = transforms.compose(prepared_moving.to_input, transforms.resample_matrix(moving.shape, moving_full))
        moving_lm = transforms.apply_to_points(transforms.invert(to_full), np.asarray(moving_landmarks_xy, float))
        fixed_lm = np.asarray(fixed_landmarks_xy, float)
    if teacher == "landmarks":
        fixed_working = transforms.apply_to_points(transforms.invert(fixed_to_original), fixed_lm)
        pose = target = transforms.fit_affine(moving_lm, fixed_working)
    else:
        pyramid = StructurePyramid(prepared_moving, prepared_fixed)
        poses = search_pose(pyramid)
        pose, target = poses[0].matrix, None
        if teacher == "refinement":
            refined = refine_affine(pyramid, [p.matrix for p in poses])
            pose, target = poses[refined.start_index].matrix, refined.matrix
    result = TrainingPair(
        name, resize_float(moving, prepared_moving.factor), resize_float(fixed, prepared_fixed.factor), pose, factor=1.0,
        moving_landmarks=moving_lm, fixed_landmarks=fixed_lm, fixed_to_original=fixed_to_original,
        fixed_diagonal=image_diagonal(fixed_full), target=target)
    if result.moving.shape[:2] != prepared_moving.image.shape or result.fixed.shape[:2] != prepared_fixed.image.shape:
        raise AssertionError("working shapes of the pair differ from preprocessing")  # pragma: no cover
    return result


def posed_table_pair(row: Pair, working_size: int, held_out: bool, teacher: Teacher = "refinement") -> TrainingPair:
    """A pairs-table row posed for training (or, ``held_out``, for validation); remembered while its files are
    unchanged (path, modification time and size), so a second run on the same table poses nothing."""
    files = tuple(_file_version(path) for path in (row.moving_image, row.fixed_image, row.moving_landmarks,
                                                   row.fixed_landmarks))
    return _posed_files(files, row.case, working_size, None if held_out else teacher)


def _file_version(path) -> tuple:
    try:
        status = os.stat(path)
    except (OSError, TypeError):  # no such file, or no path (a table without landmark columns)
        return path, None, None
    return path, status.st_mtime_ns, status.st_size


@lru_cache(maxsize=POSE_CACHE_PAIRS)
def _posed_files(files: tuple, case: str, working_size: int, teacher: Teacher | None) -> TrainingPair:
    (moving_path, _, _), (fixed_path, _, _), (moving_lm, _, _), (fixed_lm, _, _) = files
    moving = read_image(moving_path, max_long_side=working_size)
    fixed = read_image(fixed_path, max_long_side=working_size)
    landmarks = (None, None)
    if moving_lm and fixed_lm and Path(moving_lm).is_file() and Path(fixed_lm).is_file():
        landmarks = (read_landmarks(moving_lm), read_landmarks(fixed_lm))
    return _posed_pair(moving.data, fixed.data, *landmarks, working_size, case, (moving.full_shape, fixed.full_shape),
                       teacher)


def phantom_pair_steps(count: int, seed: int, working_size: int, start: float = 0.0, share: float = 1.0
                       ) -> Generator[Progress, object, tuple[list[TrainingPair], list[TrainingPair]] | None]:
    """The training and validation pairs of ``count`` phantom specimens of dataset ``seed``.

    Only the development families (``FAMILY_PARTS["dev"]``) are generated, so the final part's families
    stay unseen by the network as by every other choice. Every stain pair of a specimen (as the phantom
    datasets pair them) trains with its landmarks' affine fit as target; every ``VALIDATE_EVERY``-th
    specimen instead validates, posed as the network alone meets it (the search's first pose). Yields a
    :class:`Progress` (from ``start``, over ``share`` of the preparation) before each specimen; answering
    :data:`~napari_histoaffine.progress.STOP` returns None.
    """
    from ..phantoms.dataset import section_pairs, specimen_seed  # the generator loads only when asked for
    from ..phantoms.families import FAMILY_PARTS
    from ..phantoms.sections import make_sections
    from ..phantoms.specimen import make_specimen

    train: list[TrainingPair] = []
    validation: list[TrainingPair] = []
    for index in range(count):
        if (yield Progress("preparing pairs", start + share * index / count,
                           f"phantom specimen {index + 1}/{count}")) == STOP:
            return None
        specimen = make_specimen(specimen_seed(seed, index), FAMILY_PARTS["dev"])
        sections = make_sections(specimen)
        held_out = index % VALIDATE_EVERY == VALIDATE_EVERY - 1
        rng = np.random.default_rng([specimen.seed, 0x9A1])  # the phantom datasets' own pairing
        for source, target in section_pairs(sections, rng):
            moving, fixed = sections[source], sections[target]
            name = f"phantom-{seed}-{index:03d}_{source}-{moving.stain.style}_to_{target}-{fixed.stain.style}"
            landmarks = (moving.landmarks, fixed.landmarks)
            if held_out:
                validation.append(pose_validation_pair(moving.image, fixed.image, *landmarks, working_size, name=name))
            else:
                train.append(pose_training_pair(moving.image, fixed.image, *landmarks, working_size, name=name,
                                                teacher="landmarks"))
    return train, validation


def is_held_out(path, holdout: Sequence[str]) -> bool:
    """Whether the file name of ``path`` contains one of the ``holdout`` substrings (case-insensitive)."""
    name = Path(path).name.lower()
    return any(h.lower() in name for h in holdout if h)


def data_sources(description: dict) -> list[DataSource]:
    """The sources of a ``TrainingConfig.data`` description (keys: pairs, folders, ihc, crops, holdout,
    landmark_targets, phantoms, phantom_seed), in the order the pairs are drawn: tables, folders, the ihc
    sample, phantoms."""
    crops = bool(description.get("crops", True))
    holdout = tuple(description.get("holdout", []) or [])
    teacher = "landmarks" if description.get("landmark_targets") else "refinement"
    phantoms = int(description.get("phantoms", 0) or 0)
    return ([DataSource("table", str(path), holdout=holdout, teacher=teacher)
             for path in description.get("pairs", []) or []]
            + [DataSource("folder", str(path), holdout=holdout, crops=crops)
               for path in description.get("folders", []) or []]
            + ([DataSource("ihc", crops=crops)] if description.get("ihc") else [])
            + ([DataSource("phantoms", count=phantoms, seed=int(description.get("phantom_seed", 0)))]
               if phantoms else []))


def training_data_steps(sources: Sequence[DataSource],
                        working_size: int) -> Generator[Progress, object, TrainingData | None]:
    """The training and validation pairs of ``sources`` (rule in the module docstring), in order.

    Yields a :class:`Progress` before posing each real pair (a fraction of a second each); answering one
    with :data:`~napari_histoaffine.progress.STOP` ends the generator there, returning None.
    """
    train, validation = [], []
    for i, source in enumerate(sources):
        if source.kind == "table":
            rows = read_pairs_table(source.path)
            for j, row in enumerate(rows):
                message = f"pose search {j + 1}/{len(rows)}: {row.case}"
                if (yield Progress("preparing pairs", (i + j / len(rows)) / len(sources), message)) == STOP:
                    return None
                held = is_held_out(row.moving_image, source.holdout) or is_held_out(row.fixed_image, source.holdout)
                (validation if held else train).append(posed_table_pair(row, working_size, held, source.teacher))
        elif source.kind == "layers":
            s = source.sections
            if (yield Progress("preparing pairs", i / len(sources), f"pose search: {s.name}")) == STOP:
                return None
            pair = pose_training_pair(s.moving, s.fixed, s.moving_landmarks_xy, s.fixed_landmarks_xy, working_size,
                                      name=s.name, full_shapes=s.full_shapes)
            train.append(pair)
            validation.append(pair)
        elif source.kind == "folder":
            train += folder_pairs(source.path, working_size, source.crops, source.holdout)
        elif source.kind == "ihc":
            train += ihc_pairs(source.crops)
        elif source.kind == "phantoms":
            pairs = yield from phantom_pair_steps(source.count, source.seed, working_size, i / len(sources),
                                                  1 / len(sources))
            if pairs is None:
                return None
            train += pairs[0]
            validation += pairs[1]
        else:
            raise ValueError(f"unknown data source kind {source.kind!r}: use table, folder, ihc, layers or phantoms")
    if not train:
        raise InputError("no training data: give pairs tables, folders of images, phantoms or the built-in ihc sample")
    return TrainingData(train, validation)
