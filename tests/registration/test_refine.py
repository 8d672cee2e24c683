"""The ECC refinement on scikit-image's ihc.png moved by a small known affine, and the pose matrices it starts from."""
import numpy as np
import pytest
from skimage import data

from napari_histoaffine import transforms
from napari_histoaffine.registration.features import StructurePyramid
from napari_histoaffine.registration.pose import pose_matrices
from napari_histoaffine.registration.preprocess import prepare_pair
from napari_histoaffine.registration.refine import _solve_or_stay, refine_affine

TRUTH = transforms.compose(transforms.rotation(3.0, (96.0, 96.0)), transforms.scaling(1.04, 0.98),
                           transforms.translation(5.0, -4.0))   # moving → fixed, working pixels


@pytest.fixture(scope="module")
def pyramid():
    """Both images cropped from the middle of the moved and the unmoved whole, so neither has empty borders."""
    whole = data.immunohistochemistry()[::2, ::2]
    crop = np.s_[32:224, 32:224]
    truth_in_whole = transforms.compose(transforms.translation(-32, -32), TRUTH, transforms.translation(32, 32))
    moving = transforms.warp_image(whole, transforms.invert(truth_in_whole), whole.shape).astype(np.uint8)[crop]
    fixed = whole[crop]
    prepared_moving, prepared_fixed = prepare_pair(moving, fixed, max(fixed.shape[:2]))  # no resampling
    return StructurePyramid(prepared_moving, prepared_fixed)


def _grid_error(matrix, shape):
    rows, cols = np.mgrid[0.2:0.8:5j, 0.2:0.8:5j]
    points = np.c_[cols.ravel() * shape[1], rows.ravel() * shape[0]]
    return np.abs(transforms.apply_to_points(matrix, points) - transforms.apply_to_points(TRUTH, points)).max()


def test_refinement_from_the_identity_reaches_subpixel_error(pyramid):
    shape = pyramid.fixed.image.shape
    assert _grid_error(transforms.identity(), shape) > 10
    refined = refine_affine(pyramid, [transforms.identity()], ((96, 12, 1), (192, 6, 1), (max(shape), 6, 2)))
    assert _grid_error(refined.matrix, shape) < 0.5
    before, after = pyramid.similarity([transforms.identity(), refined.matrix], max(shape))
    assert after > before


def test_the_start_that_refines_best_wins_the_race(pyramid):
    wrong = transforms.compose(transforms.mirror_x(pyramid.fixed.image.shape[1] / 2), TRUTH)
    refined = refine_affine(pyramid, [wrong, transforms.identity()], ((96, 8, 1),))
    assert refined.start_index == 1
    assert refined.race.similarities[1] > refined.race.similarities[0]


def test_pose_matrices_follow_the_transform_convention():
    angles, flipped = np.array([0.0, 37.0, 200.0, 354.0]), np.array([False, True, False, True])
    stack = pose_matrices(angles, flipped, 1.12, (40.0, 30.0), (55.0, 61.0))
    for angle, flip, matrix in zip(angles, flipped, stack):
        expected = transforms.compose(
            transforms.translation(-40.0, -30.0), transforms.mirror_x(0.0) if flip else transforms.identity(),
            transforms.rotation(float(angle)), transforms.scaling(1.12), transforms.translation(55.0, 61.0))
        np.testing.assert_allclose(matrix, expected, atol=1e-12)


def test_a_singular_system_takes_no_step_and_leaves_the_others_theirs():
    rng = np.random.default_rng(0)
    regular = rng.random((6, 6)) + 6 * np.eye(6)
    projected = rng.random((3, 6, 2))
    hessian = np.stack([regular, np.zeros((6, 6)), regular])
    solved = _solve_or_stay(hessian, projected)
    np.testing.assert_allclose(solved[[0, 2]], np.linalg.solve(regular, projected[[0, 2]]))
    assert (solved[1] == 0).all()
