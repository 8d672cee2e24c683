"""The registration pipeline (the paper's Algorithm 1 plus pose candidates and refinement).

Preprocess → pose search (ranked rotation/mirror candidates) → the network corrects the candidate
that fits best → all candidates (that one corrected) race for a few refinement steps at a coarse
scale; a close race, or a race not clearly won while the scale guess is doubtful or tissue fills both
frames, first asks the network about the two strongest
different rivals of its pose: when, corrected by the network too, they trail its pose clearly, that
pose alone is polished through the final (below) and the verdict compares it with them; otherwise
the pose search takes a second, thorough look whose new poses join the race → the leader, with its close rivals, goes on into a final at
finer scales, whose winner is stretched by ±5 % along each axis and refined once more at the finest
scale: the best of the winner and its stretches is the result → the verdict compares it with the different poses tried. When
that verdict is flagged and an image holds several pieces of tissue, the largest pieces alone go through
the same stages once more, and the more confident result is kept (:mod:`.pieces`).
``refine=False`` is the paper's method. Every stage shares one
:class:`~napari_histoaffine.registration.features.StructurePyramid`, so no feature level is computed twice.

``register_steps`` is a generator that yields :class:`~napari_histoaffine.progress.Progress` after
each stage and returns the :class:`~napari_histoaffine.registration.results.RegistrationResult`, so a GUI can
run it in a worker, show progress and cancel between stages; ``register`` simply runs it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch

from .. import transforms
from ..errors import InputError
from ..progress import Progress, run_steps
from .checks import check_image
from .features import StructurePyramid, downsample_pair, small_theta
from .network import AffineNet
from .options import RegistrationOptions
from .pose import PoseSearch, same_pose
from .pieces import largest_pieces_alone
from .preprocess import PreparedImage, prepare_pair
from .refine import DEFAULT_SCALES, Race, Refiner
from .results import Pose, RegistrationResult, TissueMasks, Verdict
from .verdict import assess, pose_margin, rivals
from .weights import resolve_model


@dataclass(frozen=True)
class Schedule:
    """Refinement scales ``(long side in px, most Gauss–Newton steps, pixel stride)``, in three rounds.

    Every pose candidate races through ``race``; the leader, with its close rivals when the race was
    close, goes on through ``final``, where finer structure decides between them and the verdict
    measures the margin. The final's winner stretched along each axis is refined once more through
    ``stretch``: the best of the winner and its stretches is the result.
    """

    race: tuple
    final: tuple
    stretch: tuple


SCHEDULE = Schedule(DEFAULT_SCALES[:1], DEFAULT_SCALES[1:], DEFAULT_SCALES[-1:])
# After the network: a short race at 96 px, the final there and at 192 px, where every third pixel
# of every third row suffices (a finish at the 288-px working size gained nothing measurable; 4 steps
# there left a shared Ki67 -> He case on a flat ridge at 0.022 where 6 reach 0.015). Up to 12 steps at
# 192 px in the final: across stains as unlike as fluorescence and DAB, or with a pen stroke pulling, 6
# stop short of the optimum (development parts: 3 results 0.020-0.026 -> 0.016-0.019, none worse; shared
# 50 and mirrored 70 unchanged at 100 %; every third pixel as precise as every second, at half the time).
# The four stretches keep 6 steps: 12 there cost 3 ms a pair for two results at 0.0206 and 0.0247 that
# end at 0.0199 and 0.0163
AFTER_NETWORK_SCHEDULE = Schedule(((96, 3, 2),), ((96, 5, 1), (192, 12, 3)), ((192, 6, 3),))
REPORT_SIZE = DEFAULT_SCALES[-1][0]  # the scale of the reported NCC: where both schedules' finals end
# a race whose leader leads every different pose by less than this is close: the pose search takes a
# second, thorough look (as it does when the sections' areas differ, so the scale guess is in doubt),
# and the close rivals go on into the final with the leader
CLOSE_RACE = 0.1
# with a doubtful scale guess, or tissue filling both frames, a lead below this also takes the second look
DOUBTFUL_SCALE_LEAD = 0.2
# When the race is in doubt, the network corrects the two strongest different rivals of its pose as well (a fair
# comparison: it improves any pose it sees); when its pose then leads them at the race scale by this much, it
# alone is polished through the final (no second look, no rivals in the final). Chosen on development sets only,
# shared and the lung and phantom hard dev parts (benchmarks/bench_fast_path.py).
CLEAR_NETWORK_LEAD = 0.15


def _network_poses(model: AffineNet, moving: PreparedImage, fixed: PreparedImage, matrices: list[np.ndarray],
                   passes: int) -> list[np.ndarray]:
    """Each pose followed by the network's affine corrections (working moving → fixed matrices), in one batch.

    The network sees the posed moving image and the fixed image at the size it was trained on; its
    theta lives in normalised coordinates of the fixed grid, which no resampling changes. It runs
    ``passes`` times, each pass on the moving image warped by the previous estimate.
    """
    fixed_long_side = model.config.input_long_side
    long_side = round(fixed_long_side * max(max(moving.image.shape), max(fixed.image.shape)) / max(fixed.image.shape))
    moving_small, m_to_small, fixed_small, f_to_small = downsample_pair(moving.image, fixed.image, long_side)
    shape = fixed_small.shape[-2:]
    batch = np.stack(matrices)
    fixed_batch = fixed_small.expand(len(batch), -1, -1, -1)
    for _ in range(passes):
        thetas = small_theta(batch, m_to_small, moving_small.shape[-2:], f_to_small, shape)
        with torch.inference_mode():
            posed = transforms.warp_tensor(moving_small.expand(len(batch), -1, -1, -1),
                                           torch.from_numpy(np.asarray(thetas)).float(), shape)
            corrections = model(posed, fixed_batch).numpy()
        batch = np.stack([transforms.compose(m, transforms.from_theta(c, fixed.image.shape, fixed.image.shape))
                          for m, c in zip(batch, corrections)])
    return list(batch)


def _network_race(network: AffineNet, moving: PreparedImage, fixed: PreparedImage, pyramid: StructurePyramid,
                  poses: list[Pose], starts: list[np.ndarray], chosen: int, similarities, size: int) -> Race | None:
    """The starts (``chosen`` already corrected by the network) with its two strongest different rivals, by
    the search's ``similarities`` at ``size``, corrected by the network too, and their similarities at
    ``size``, when the chosen pose then leads by ``CLEAR_NETWORK_LEAD``; else None."""
    ranked = Race(np.stack([p.matrix for p in poses]), list(similarities), list(range(len(poses))))
    challengers = rivals(ranked, chosen, within=0.0, most=2)
    if not challengers:
        return None
    corrected = list(starts)
    for i, matrix in zip(challengers, _network_poses(network, moving, fixed, [starts[i] for i in challengers], 1)):
        corrected[i] = matrix
    race = Race(np.stack(corrected), list(pyramid.similarity(corrected, size)), list(range(len(starts))))
    return race if pose_margin(race, chosen) >= CLEAR_NETWORK_LEAD else None


def _tissue_overlap(moving: PreparedImage, fixed: PreparedImage, matrix: np.ndarray) -> float:
    """Dice overlap of the fixed tissue mask and the warped moving tissue mask (at the working size)."""
    moving_mask = np.where(moving.mask, np.uint8(255), np.uint8(0))
    warped = transforms.sample_bilinear(moving_mask, transforms.invert(matrix), fixed.mask.shape, dtype=np.uint8) >= 128
    total = int(np.count_nonzero(warped)) + int(np.count_nonzero(fixed.mask))
    return float(2.0 * np.count_nonzero(warped & fixed.mask) / total) if total else 0.0


def _second_look(search: PoseSearch, poses: list[Pose], top_k: int) -> list[Pose]:
    """The thorough search's poses that the first one did not find."""
    return [p for p in search.second_look(top_k) if not any(same_pose(p, q) for q in poses)]


def _race_and_final(refiner: Refiner, search: PoseSearch, poses: list[Pose], starts: list[np.ndarray],
                    schedule: Schedule, candidate: int | None, top_k: int, network_lead: Callable | None = None):
    """Race every start; when the race is close, or not clear while the scale is in doubt or tissue fills both
    frames, ask ``network_lead`` (if given) and, when it settles the doubt, polish the network's pose alone; else
    take a second look, then the final.

    Returns the poses (with the second look's), the race the verdict reads (the final when close
    rivals went on, the network's race when it settled the doubt, else the race itself) with the
    winner's row in it, and the winner's matrix.
    """
    race = refiner.race(starts, schedule.race, range(len(starts)))
    lead = pose_margin(race, race.best)
    in_doubt = search.sizes_differ or search.fills_frames  # the area ratio's scale, or the outline, says little
    if candidate is None and (lead < CLOSE_RACE or (in_doubt and lead < DOUBTFUL_SCALE_LEAD)):
        settled = network_lead() if network_lead is not None else None
        if settled is not None:
            network_race, chosen = settled
            matrix = refiner.best_stretch(refiner.refine(network_race.matrices[[chosen]], schedule.final)[0],
                                          schedule.stretch)
            network_race.matrices[chosen] = matrix  # the verdict's yardstick: against the rivals as the network left them
            network_race.similarities[chosen] = float(refiner.pyramid.similarity([matrix], schedule.race[0][0])[0])
            return poses, network_race, chosen, matrix
        extra = _second_look(search, poses, top_k)
        if extra:
            race = race + refiner.race([p.matrix for p in extra], schedule.race, range(len(poses), len(poses) + len(extra)))
            poses = poses + extra
            lead = pose_margin(race, race.best)
    leader = race.best if candidate is None else race.position(candidate)
    close = lead < CLOSE_RACE or candidate is not None
    finalists = [leader] + (rivals(race, leader, within=CLOSE_RACE) if close else [])
    if len(finalists) == 1:  # a clear race's lead speaks for itself
        matrix = refiner.best_stretch(refiner.refine(race.matrices[finalists], schedule.final)[0], schedule.stretch)
        return poses, race, leader, matrix
    final = refiner.race(race.matrices[finalists], schedule.final, [race.indices[i] for i in finalists])
    in_final = final.best if candidate is None else 0  # the final decided and measures the margin
    return poses, final, in_final, refiner.best_stretch(final.matrices[in_final], schedule.stretch)


def _pixels(image, full_shape, role: str) -> tuple[np.ndarray, tuple[int, ...]]:
    """The pixels to register and the full-resolution shape the matrix refers to.

    ``image`` is an array (gray, RGB or RGBA, any numeric or boolean dtype) or a read pyramid level
    (:class:`napari_histoaffine.files.images.ImageLevel`, a reduced level of its ``full_shape``).
    """
    from ..files.images import ImageLevel  # imported here: the engine needs no file I/O of its own

    if isinstance(image, ImageLevel):
        return np.asarray(image.data), tuple(full_shape or image.full_shape)
    array = np.asarray(image) if isinstance(image, np.ndarray) or hasattr(image, "__array__") else None
    if array is None or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"the {role} image must be a numpy array (gray, RGB or RGBA) or an ImageLevel "
                        f"(from files.images.read_image), not {type(image).__name__}")
    return array, tuple(full_shape or array.shape)


@dataclass(frozen=True)
class _Outcome:
    """What the stages after preprocessing find on one prepared pair (working pixels)."""

    poses: list[Pose]
    matrix: np.ndarray
    verdict: Verdict
    ncc_before: float
    ncc_after: float


def _stages(prepared_moving: PreparedImage, prepared_fixed: PreparedImage, options: RegistrationOptions,
            network: AffineNet | None, candidate: int | None, here: np.ndarray | None,
            finished: Callable[[str], Progress]) -> Generator[Progress, None, _Outcome]:
    """Pose search → network → refinement → verdict on one prepared pair, yielding ``finished``'s report of each
    stage; ``here`` is a start matrix in working pixels (see :func:`register_steps`)."""
    pyramid = StructurePyramid(prepared_moving, prepared_fixed)
    search = PoseSearch(pyramid, search_mirror=options.search_mirror)
    poses = search.first(options.top_k)
    if candidate is not None or here is not None:  # the list a forced index refers to is always the full one
        poses = poses + _second_look(search, poses, options.top_k)
    if here is not None:  # the given pose joins the candidates, and is the one that goes on
        angle, mirrored = transforms.rotation_and_mirror(here)
        poses = poses + [Pose(angle, mirrored, float("nan"), here, float(np.sqrt(abs(np.linalg.det(here[:2, :2])))))]
        candidate = len(poses) - 1
    yield finished("pose search")
    if candidate is not None and not 0 <= candidate < len(poses):
        raise InputError(f"pose candidate {candidate} does not exist: the search found {len(poses)}")
    starts = [p.matrix for p in poses]
    schedule = SCHEDULE if network is None else AFTER_NETWORK_SCHEDULE
    chosen = candidate or 0
    similarities = None  # of the search's poses at the race scale, when the network chose among them
    if network is not None:  # the best-fitting (or the forced) pose is corrected by the network
        if candidate is None and len(starts) > 1:
            similarities = pyramid.similarity(starts, schedule.race[0][0])
            chosen = int(np.argmax(similarities))
        passes = 1 if options.refine else network.config.passes
        starts[chosen] = _network_poses(network, prepared_moving, prepared_fixed, [starts[chosen]], passes)[0]
        yield finished("network")
    if options.refine:
        def network_lead():  # asked only when the race is in doubt: is the network's pose clearly right?
            clear = _network_race(network, prepared_moving, prepared_fixed, pyramid, poses, starts, chosen,
                                  similarities, schedule.race[0][0])
            return None if clear is None else (clear, chosen)

        poses, race, winner, matrix = _race_and_final(Refiner(pyramid), search, poses, starts, schedule, candidate,
                                                      options.top_k, network_lead if similarities is not None else None)
        yield finished("refinement")
    else:  # no race: the starts as they are are the yardstick
        matrix, winner = starts[chosen], chosen
        race = Race(np.stack(starts), pyramid.similarity(starts, schedule.race[0][0]), list(range(len(starts))))
    # reported over the whole fixed image: how much of it the moving image explains
    before, after = pyramid.similarity([transforms.identity(), matrix], REPORT_SIZE, masked=False)
    return _Outcome(poses, matrix, assess(race, winner, after), before, after)


def register_steps(moving: np.ndarray, fixed: np.ndarray, options: RegistrationOptions | None = None, *,
                   candidate: int | None = None, start: np.ndarray | None = None,
                   moving_full_shape=None, fixed_full_shape=None,
                   largest_pieces: bool | None = None) -> Generator[Progress, None, RegistrationResult]:
    """Register ``moving`` onto ``fixed`` as ``options`` say (default: :class:`RegistrationOptions`()),
    yielding progress after each stage.

    ``candidate`` forces the
    later stages to go on from that pose of the search's ranked candidates (to try a runner-up the
    automatic choice passed over); the other candidates still race, so the verdict can tell whether
    another pose fits better. ``start`` (a full-resolution moving → fixed matrix, e.g. a pose set
    by hand) is refined instead, without the network, and raced against the search's poses in the
    same way ("refine from here"). Either image may also be an ``ImageLevel`` as ``files.images.read_image``
    returns it. When arrays are reduced levels of larger images, ``*_full_shape`` gives the
    full-resolution (rows, cols) the returned matrix refers to. An image with nothing to register
    (:func:`~napari_histoaffine.registration.checks.check_image`) raises ``UnusableImageError`` first.
    A section with a piece of tissue beside it (another specimen's, or a fragment) misleads every stage:
    ``largest_pieces`` None registers the largest piece of each image as well when the whole tissue's
    result is flagged, and keeps the more confident (:attr:`RegistrationResult.largest_pieces` says which);
    True registers the largest pieces only (as a rerun from such a result's candidates must); False, all tissue.
    """
    moving, moving_full_shape = _pixels(moving, moving_full_shape, "moving")
    fixed, fixed_full_shape = _pixels(fixed, fixed_full_shape, "fixed")
    check_image(moving, "moving", full_shape=moving_full_shape)  # blank, uniform, tiny or tissue-free: refused first
    check_image(fixed, "fixed", full_shape=fixed_full_shape)
    if start is not None and candidate is not None:
        raise InputError("give a pose candidate or a start matrix to refine from, not both")
    options = options or RegistrationOptions()
    network = None if start is not None else resolve_model(options.model)
    planned = ["preprocess", "pose search"] + (["network"] if network is not None else []) + (
        ["refinement"] if options.refine else [])
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def finished(stage: str) -> Progress:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now
        return Progress(stage, len(timings) / len(planned), f"{stage} done in {timings[stage] * 1000:.0f} ms")

    prepared_moving, prepared_fixed = prepare_pair(moving, fixed, options.working_size)
    moving_working_to_full = transforms.compose(prepared_moving.to_input,
                                                transforms.resample_matrix(moving.shape, moving_full_shape))
    fixed_working_to_full = transforms.compose(prepared_fixed.to_input,
                                               transforms.resample_matrix(fixed.shape, fixed_full_shape))
    here = None if start is None else transforms.compose(moving_working_to_full, np.asarray(start, float),
                                                         transforms.invert(fixed_working_to_full))
    pieces = largest_pieces_alone(moving, fixed, prepared_moving, prepared_fixed) if largest_pieces else None
    by_pieces = pieces is not None
    if by_pieces:
        prepared_moving, prepared_fixed = pieces
    yield finished("preprocess")
    outcome = yield from _stages(prepared_moving, prepared_fixed, options, network, candidate, here, finished)
    if largest_pieces is None and candidate is None and start is None and outcome.verdict.flagged:
        pieces = largest_pieces_alone(moving, fixed, prepared_moving, prepared_fixed)
        if pieces is not None:  # a second registration, of the largest pieces alone
            planned.append("largest pieces")
            def within_pieces(stage: str) -> Progress:  # reported, and a point to cancel at, but timed as one stage
                return Progress("largest pieces", len(timings) / len(planned), f"largest pieces: {stage} done")

            alone = yield from _stages(*pieces, options, network, None, None, within_pieces)
            yield finished("largest pieces")
            if alone.verdict.confidence > outcome.verdict.confidence:
                (prepared_moving, prepared_fixed), outcome, by_pieces = pieces, alone, True
    full = transforms.compose(transforms.invert(moving_working_to_full), outcome.matrix, fixed_working_to_full)
    angle, mirrored = transforms.rotation_and_mirror(full)  # the result's, not the candidate's it started from
    return RegistrationResult(
        matrix=full,
        moving_shape=tuple(int(v) for v in moving_full_shape[:2]),
        fixed_shape=tuple(int(v) for v in fixed_full_shape[:2]),
        stages=planned, timings=timings, ncc_before=outcome.ncc_before, ncc_after=outcome.ncc_after,
        rotation_deg=angle, flipped=mirrored, candidates=outcome.poses, verdict=outcome.verdict,
        tissue_overlap=_tissue_overlap(prepared_moving, prepared_fixed, outcome.matrix), largest_pieces=by_pieces,
        masks=TissueMasks(prepared_moving.mask, prepared_fixed.mask, moving_working_to_full, fixed_working_to_full))


def register(moving: np.ndarray, fixed: np.ndarray, options: RegistrationOptions | None = None, *,
             candidate: int | None = None, start: np.ndarray | None = None, moving_full_shape=None,
             fixed_full_shape=None, largest_pieces: bool | None = None,
             on_progress: Callable[[Progress], None] | None = None) -> RegistrationResult:
    """Register ``moving`` onto ``fixed``, reporting to ``on_progress``; see :func:`register_steps`."""
    steps = register_steps(moving, fixed, options, candidate=candidate, start=start, moving_full_shape=moving_full_shape,
                           fixed_full_shape=fixed_full_shape, largest_pieces=largest_pieces)
    return run_steps(steps, on_progress)
