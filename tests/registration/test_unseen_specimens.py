"""Sections of specimens the engine was never tuned on, made hard as users' slides are.

Most cases are two sections of one phantom specimen in different stains, the moving one turned,
scaled and mirrored by a known affine (``benchmarks/make_hard_cases.py``); the full-frame one crops
``ihc.png``'s interior. A case is right when the moving section's landmarks land within the ANHIR
success limit (median rTRE ≤ 0.02).
"""
from __future__ import annotations

import numpy as np

from napari_histoaffine import transforms
from napari_histoaffine.evaluation.metrics import image_diagonal, landmark_stats
from napari_histoaffine.phantoms import make_specimen, render_section
from napari_histoaffine.registration.pipeline import register

SUCCESS = 0.02


def sections(seed: int, styles: tuple[str, ...], fills_frame: bool = False):
    """Sections of the first specimen from ``seed`` on whose tissue shows glass around it (or, ``fills_frame``,
    none), as BGR images (as the case generator reads them) with their landmarks."""
    specimen = make_specimen(seed, ("glands", "vessels"), long_side=520)
    while (specimen.outline.mean() > 0.9) != fills_frame:
        seed += 1000
        specimen = make_specimen(seed, ("glands", "vessels"), long_side=520)
    made = [render_section(specimen, index, style) for index, style in enumerate(styles)]
    return [(np.ascontiguousarray(s.image[..., ::-1]), s.landmarks) for s in made]


def median_rtre(case) -> float:
    """Register the case's source onto its target and score the mapped landmarks."""
    rgb = [np.ascontiguousarray(image[..., ::-1]) for image in (case.source, case.target)]
    result = register(*rgb)
    mapped = transforms.apply_to_points(result.matrix, case.source_points)
    return landmark_stats(mapped, case.target_points, image_diagonal(case.target.shape)).rtre_median


def test_a_dark_background_section_registers_onto_a_bright_field_one(hard_cases):
    (target, lt), (source, ls) = sections(11, ("he", "fluorescence"))
    assert np.median(source[0]) < 60 < np.median(target[0])  # glass: black against white
    # heavy-jpeg's images are the plain large affine (the JPEG quality only applies when written)
    case, _, _ = hard_cases.make_new_case("heavy-jpeg", np.random.default_rng(1), target, source, lt, ls, [], flip=True)
    assert median_rtre(case) < SUCCESS


def test_a_four_times_smaller_moving_section_registers(hard_cases):
    (target, lt), (source, ls) = sections(12, ("he", "dab"))
    rng = np.random.default_rng(2)
    case, _, scale = hard_cases.make_new_case("low-res", rng, target, source, lt, ls, [], flip=False)
    assert scale < 0.34 and max(case.source.shape) < 0.4 * max(case.target.shape)
    assert median_rtre(case) < SUCCESS


def test_a_full_frame_crop_registers_by_its_interior(ihc_at):
    """Tissue fills both frames (crops of ``ihc.png``'s interior, one re-stained, turned, mirrored and scaled), so
    the outline is the crop's rectangle and only the interior tells the pose."""
    from napari_histoaffine.sample import restain

    ihc = ihc_at(1.0)
    fixed = np.ascontiguousarray(ihc[60:452, 60:452])
    centre = (fixed.shape[1] - 1) / 2, (fixed.shape[0] - 1) / 2
    side = 260  # its corners stay inside the fixed crop at any angle: half-diagonal 130 * sqrt(2) / 1.1 < 196
    moving_to_fixed = transforms.compose(
        transforms.translation(-(side - 1) / 2, -(side - 1) / 2), transforms.mirror_x(0.0), transforms.rotation(123.0),
        transforms.scaling(1 / 1.1), transforms.translation(*centre))
    moving = transforms.warp_image(restain(fixed), transforms.invert(moving_to_fixed), (side, side))
    moving = np.round(np.clip(moving, 0, 1) * 255).astype(np.uint8)
    grid = np.linspace(0.15, 0.85, 6) * (side - 1)
    moving_points = np.array([(x, y) for x in grid for y in grid])
    result = register(moving, fixed)
    mapped = transforms.apply_to_points(result.matrix, moving_points)
    truth = transforms.apply_to_points(moving_to_fixed, moving_points)
    assert landmark_stats(mapped, truth, image_diagonal(fixed.shape)).rtre_median < SUCCESS


def test_a_section_with_a_pen_stroke_a_fold_and_a_second_fragment_registers(hard_cases):
    (target, lt), (source, ls) = sections(14, ("he", "dab"))
    (other, _), = sections(99, ("pale",))
    rng = np.random.default_rng(4)
    case, _, _ = hard_cases.make_new_case("heavy-jpeg", rng, target, source, lt, ls, [], flip=True)
    kinds = hard_cases.hard_kinds
    image = case.source
    mask = hard_cases.tissue_mask(image)
    image = kinds.fold(rng, kinds.pen_strokes(rng, image, mask), mask)
    glass = hard_cases.background_colour(image)
    relit = kinds.relight(other, hard_cases.background_colour(other), glass)
    piece = kinds.cut_fragment(rng, relit, hard_cases.tissue_mask(other), 0.3 * kinds.section_area(mask))
    image, shift = kinds.place_beside(rng, image, mask, *piece, glass)
    assert image.shape[:2] != case.source.shape[:2]  # the canvas grew to hold the fragment
    marked = hard_cases.Case(case.target, case.target_points, image, case.source_points + shift)
    assert median_rtre(marked) < SUCCESS
