"""The engine end to end on scikit-image's ihc.png warped by known affines."""
import numpy as np
import pytest
from skimage import transform

from napari_histoaffine import transforms
from napari_histoaffine.errors import InputError
from napari_histoaffine.evaluation.metrics import image_diagonal, landmark_stats
from napari_histoaffine.registration.options import RegistrationOptions
from napari_histoaffine.registration.pipeline import _tissue_overlap, register
from napari_histoaffine.registration.preprocess import prepare_pair


@pytest.fixture(scope="module")
def ihc(ihc_at):
    return ihc_at(0.6)


def tissue_grid(shape, n=6):
    rows, cols = np.meshgrid(np.linspace(0.2, 0.8, n) * shape[0], np.linspace(0.2, 0.8, n) * shape[1], indexing="ij")
    return np.c_[cols.ravel(), rows.ravel()]


def known_pair(fixed, angle, scale, flip=False, shear=0.0):
    """Moving image made from ``fixed`` and the true moving → fixed matrix."""
    h, w = fixed.shape[:2]
    centre = (w / 2, h / 2)
    out_shape = (round(h * 1.15), round(w * 1.15))
    fixed_to_moving = transforms.compose(
        transforms.mirror_x(w / 2) if flip else transforms.identity(),
        transforms.rotation(angle, centre), transforms.scaling(scale),
        np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1.0]]),
        transforms.translation(out_shape[1] / 2 - scale * w / 2, out_shape[0] / 2 - scale * h / 2))
    moving = transforms.warp_image(fixed, fixed_to_moving, out_shape, cval=float(np.median(fixed[0, 0])))
    return moving.astype(np.uint8), transforms.invert(fixed_to_moving)


@pytest.mark.parametrize("angle,scale,flip,shear", [(37.0, 0.9, False, 0.08), (200.0, 1.15, True, 0.0)])
def test_recovers_known_affine_within_one_percent_of_the_diagonal(ihc, angle, scale, flip, shear):
    moving, truth = known_pair(ihc, angle, scale, flip, shear)
    result = register(moving, ihc, RegistrationOptions(model=None))
    fixed_points = tissue_grid(ihc.shape)
    moving_points = transforms.apply_to_points(transforms.invert(truth), fixed_points)
    stats = landmark_stats(transforms.apply_to_points(result.matrix, moving_points), fixed_points, image_diagonal(ihc.shape))
    assert stats.rtre_max < 0.01
    assert result.flipped is flip
    assert result.ncc_after > result.ncc_before
    assert result.stages == ["preprocess", "pose search", "refinement"]
    assert set(result.timings) == set(result.stages)


def test_candidates_are_ranked_and_a_chosen_candidate_is_used(ihc):
    moving, _ = known_pair(ihc, 120.0, 1.0)
    result = register(moving, ihc, RegistrationOptions(model=None, refine=False))
    scores = [p.score for p in result.candidates]
    assert scores == sorted(scores, reverse=True) and len(scores) > 1
    runner_up = register(moving, ihc, RegistrationOptions(model=None, refine=False), candidate=1)
    assert runner_up.flipped == result.candidates[1].flipped
    assert runner_up.rotation_deg == pytest.approx(result.candidates[1].angle_deg, abs=1e-6)  # no refinement: as found
    with pytest.raises(InputError, match="candidate"):
        register(moving, ihc, RegistrationOptions(model=None, refine=False), candidate=99)


def test_matrix_refers_to_full_resolution_when_given_a_reduced_level(ihc):
    moving, truth = known_pair(ihc, 15.0, 1.0)
    half = lambda img: (transform.rescale(img, 0.5, channel_axis=-1, anti_aliasing=True) * 255).astype(np.uint8)
    result = register(half(moving), half(ihc), RegistrationOptions(model=None), moving_full_shape=moving.shape[:2],
                      fixed_full_shape=ihc.shape[:2])
    assert result.moving_shape == moving.shape[:2] and result.fixed_shape == ihc.shape[:2]
    fixed_points = tissue_grid(ihc.shape)
    moving_points = transforms.apply_to_points(transforms.invert(truth), fixed_points)
    error = np.linalg.norm(transforms.apply_to_points(result.matrix, moving_points) - fixed_points, axis=1)
    assert np.median(error) / image_diagonal(ihc.shape) < 0.01


def test_grayscale_and_float_inputs_register(ihc):
    moving, _ = known_pair(ihc, 30.0, 1.0)
    gray_fixed = ihc.mean(axis=2).astype(np.float32) / 255.0
    result = register(moving[..., 0].astype(np.uint16) * 200, gray_fixed, RegistrationOptions(model=None, refine=False))
    assert np.isfinite(result.matrix).all()


def test_empty_image_is_rejected_with_a_clear_error(ihc):
    with pytest.raises(InputError, match="empty"):
        register(np.zeros((0, 10, 3), np.uint8), ihc, RegistrationOptions(model=None))


def test_an_untrained_network_keeps_the_pose_and_its_stage_is_reported(ihc):
    from napari_histoaffine.registration.network import AffineNet, NetworkConfig

    moving, _ = known_pair(ihc, 75.0, 1.05)
    pose_only = register(moving, ihc, RegistrationOptions(model=None, refine=False))
    untrained = AffineNet(NetworkConfig(correlation_radius=0))  # the identity at initialisation
    with_network = register(moving, ihc, RegistrationOptions(model=untrained, refine=False))
    assert with_network.stages == ["preprocess", "pose search", "network"]
    np.testing.assert_allclose(with_network.matrix, pose_only.matrix, atol=1e-4)


def test_refine_from_a_pose_set_by_hand_returns_to_the_registered_pose():
    """A registration turned by 5° by hand, refined from there ("refine from here"), is the registration again."""
    from napari_histoaffine.sample import make_pair

    pair = make_pair()
    registered = register(pair.moving, pair.fixed)
    centre = transforms.apply_to_points(registered.matrix, [[pair.moving.shape[1] / 2, pair.moving.shape[0] / 2]])[0]
    nudged = transforms.compose(registered.matrix, transforms.rotation(5.0, centre))
    again = register(pair.moving, pair.fixed, start=nudged)
    diagonal = image_diagonal(pair.fixed.shape)
    before = transforms.apply_to_points(registered.matrix, pair.moving_landmarks)
    change = np.median(np.hypot(*(transforms.apply_to_points(again.matrix, pair.moving_landmarks) - before).T))
    moved = np.median(np.hypot(*(transforms.apply_to_points(nudged, pair.moving_landmarks) - before).T))
    assert moved / diagonal > 0.01 and change / diagonal < 0.002
    assert "network" not in again.stages and not again.verdict.flagged
    with pytest.raises(InputError, match="not both"):
        register(pair.moving, pair.fixed, start=nudged, candidate=0)


def test_tissue_overlap_is_the_dice_overlap_of_the_sections(ihc):
    rows, cols = np.indices((240, 320))
    disc = np.hypot(rows - 120, cols - 160) < 60
    section = np.full((240, 320, 3), 255, np.uint8)
    section[disc] = ihc[rows[disc] - 60, cols[disc] - 100]
    moving, fixed = prepare_pair(section, section)
    assert _tissue_overlap(moving, fixed, transforms.identity()) == pytest.approx(1.0)
    shifted = np.zeros_like(fixed.mask)
    shifted[:, 40:] = moving.mask[:, :-40]                    # the section moved 40 px to the right
    expected = 2 * np.count_nonzero(shifted & fixed.mask) / (2 * np.count_nonzero(fixed.mask))
    assert 0.2 < expected < 0.8
    assert _tissue_overlap(moving, fixed, transforms.translation(40.0, 0.0)) == pytest.approx(expected, abs=1e-6)


def test_a_race_in_doubt_is_settled_by_the_network_when_its_pose_leads_clearly(ihc, monkeypatch):
    """A race in doubt asks the network: when its pose, against its rivals also corrected by the network, leads
    clearly, that pose alone is polished (no second look) and the verdict still names the rival; a network that
    is not sure leaves the second look to decide. Both results are right."""
    from napari_histoaffine.registration import pipeline

    moving, truth = known_pair(ihc, 150.0, 0.95, shear=0.04)
    looks = []
    real = pipeline._second_look
    monkeypatch.setattr(pipeline, "_second_look", lambda *a, **k: looks.append(1) or real(*a, **k))
    monkeypatch.setattr(pipeline, "CLOSE_RACE", np.inf)  # every race is in doubt
    settled = register(moving, ihc)
    assert looks == [] and not settled.verdict.flagged and settled.verdict.alternative is not None
    monkeypatch.setattr(pipeline, "CLEAR_NETWORK_LEAD", np.inf)  # the network is never sure enough
    looked = register(moving, ihc)
    assert looks == [1]
    fixed_points = tissue_grid(ihc.shape)
    moving_points = transforms.apply_to_points(transforms.invert(truth), fixed_points)
    diagonal = image_diagonal(ihc.shape)
    for result in (settled, looked):
        moved = transforms.apply_to_points(result.matrix, moving_points)
        assert landmark_stats(moved, fixed_points, diagonal).rtre_median < 0.004
