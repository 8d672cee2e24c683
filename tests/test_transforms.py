"""Round trips of the one transform convention: points vs warped images vs inverses vs torch thetas."""
import numpy as np
import pytest
import torch

from napari_histoaffine import transforms
from napari_histoaffine.registration.similarity import ncc

A = transforms.compose(transforms.rotation(23.0, (40.0, 30.0)), transforms.scaling(1.1, 0.93),
                       transforms.translation(7.5, -4.25))


def blob_image(shape, centre_xy, sigma=3.0):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((cols - centre_xy[0]) ** 2 + (rows - centre_xy[1]) ** 2) / (2 * sigma**2)).astype(np.float32)


def peak_xy(image):
    row, col = np.unravel_index(np.argmax(image), image.shape)
    return np.array([col, row], float)


def test_points_and_warped_image_agree():
    point = np.array([[33.0, 25.0]])
    moving = blob_image((64, 80), point[0])
    warped = transforms.warp_image(moving, A, (90, 100))
    np.testing.assert_allclose(peak_xy(warped), transforms.apply_to_points(A, point)[0], atol=1.0)


def test_inverse_round_trip_of_points():
    pts = np.random.default_rng(0).uniform(0, 100, (20, 2))
    back = transforms.apply_to_points(transforms.invert(A), transforms.apply_to_points(A, pts))
    np.testing.assert_allclose(back, pts, atol=1e-9)


def test_compose_order_is_left_to_right():
    shift, scale = transforms.translation(5, 0), transforms.scaling(2)
    np.testing.assert_allclose(transforms.apply_to_points(transforms.compose(shift, scale), [[1, 1]]), [[12, 2]])


def test_rotation_turns_counter_clockwise_on_screen():
    right_of_centre = transforms.apply_to_points(transforms.rotation(90.0, (10, 10)), [[20, 10]])
    np.testing.assert_allclose(right_of_centre, [[10, 0]], atol=1e-9)  # now above the centre (smaller row)


def test_theta_round_trip_and_torch_warp_matches_numpy_warp():
    moving = blob_image((64, 80), (30.0, 20.0))
    theta = transforms.to_theta(A, moving.shape, (90, 100))
    np.testing.assert_allclose(transforms.from_theta(theta, moving.shape, (90, 100)), A, atol=1e-9)
    warped_t = transforms.warp_tensor(torch.from_numpy(moving)[None, None], torch.tensor(theta[None], dtype=torch.float32),
                                      (90, 100))[0, 0].numpy()
    np.testing.assert_allclose(warped_t, transforms.warp_image(moving, A, (90, 100)), atol=2e-3)


def test_resample_matrix_maps_pixel_centres():
    m = transforms.resample_matrix((100, 200), (50, 100))
    np.testing.assert_allclose(transforms.apply_to_points(m, [[-0.5, -0.5], [199.5, 99.5]]), [[-0.5, -0.5], [99.5, 49.5]])


def test_xy_to_rowcol_swaps_axes_and_is_self_inverse():
    rc = transforms.xy_to_rowcol(A)
    point_xy = np.array([3.0, 8.0])
    mapped_rc = rc @ np.array([point_xy[1], point_xy[0], 1.0])
    np.testing.assert_allclose(mapped_rc[[1, 0]], transforms.apply_to_points(A, point_xy)[0])
    np.testing.assert_allclose(transforms.xy_to_rowcol(rc), A)


def test_warp_keeps_channels():
    rgb = np.random.default_rng(1).random((20, 30, 3)).astype(np.float32)
    assert transforms.warp_image(rgb, transforms.identity(), (20, 30)).shape == (20, 30, 3)
    np.testing.assert_allclose(transforms.warp_image(rgb, transforms.identity(), (20, 30)), rgb, atol=1e-6)


def test_ncc_of_image_with_itself_is_one_and_with_its_negative_minus_one():
    t = torch.from_numpy(np.random.default_rng(2).random((32, 32))).float()[None, None]
    assert float(ncc(t, t)) == pytest.approx(1.0, abs=1e-5)
    assert float(ncc(t, -t)) == pytest.approx(-1.0, abs=1e-5)
    assert float(ncc(t, 3 * t + 2)) == pytest.approx(1.0, abs=1e-5)


def test_warp_tensor_equals_affine_grid_sampling():
    images = torch.rand(2, 1, 50, 70)
    theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.2, 1.1, 0.1]], [[1.0, 0, 0], [0, 1.0, 0]]])
    grid = torch.nn.functional.affine_grid(theta, [2, 1, 40, 90], align_corners=False)
    expected = torch.nn.functional.grid_sample(images, grid, align_corners=False)
    assert torch.allclose(transforms.warp_tensor(images, theta, (40, 90)), expected, atol=1e-5)


def test_warp_tensor_after_inference_mode_still_supports_gradients():
    images = torch.rand(1, 1, 33, 47)
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    with torch.inference_mode():
        transforms.warp_tensor(images, identity, (33, 47))
    theta = identity.clone().requires_grad_(True)
    transforms.warp_tensor(images, theta, (33, 47)).sum().backward()
    assert theta.grad is not None


def test_warps_onto_many_grid_sizes_keep_a_bounded_cache():
    """A batch of differently sized pairs must not keep a sampling grid for every size it ever warped to."""
    images, identity = torch.rand(1, 1, 20, 20), torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    for size in range(10, 110):
        transforms.warp_tensor(images, identity, (size, size + 1))
    info = transforms._base_grid.cache_info()
    assert info.currsize <= info.maxsize < 100


def test_strided_warp_is_the_full_warp_subsampled():
    images = torch.rand(2, 3, 41, 57)
    theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.2, 1.1, 0.1]], [[1.0, 0, 0], [0, 1.0, 0]]])
    full = transforms.warp_tensor(images, theta, (38, 61))
    assert torch.allclose(transforms.warp_tensor(images, theta, (38, 61), stride=3), full[..., ::3, ::3], atol=1e-6)


def test_stacked_matrices_give_stacked_thetas():
    matrices = np.stack([A, transforms.identity(), transforms.invert(A)])
    thetas = transforms.to_theta(matrices, (50, 60), (40, 70))
    assert thetas.shape == (3, 2, 3)
    for matrix, theta in zip(matrices, thetas):
        np.testing.assert_allclose(theta, transforms.to_theta(matrix, (50, 60), (40, 70)), atol=1e-12)
    np.testing.assert_allclose(transforms.from_theta(thetas, (50, 60), (40, 70)), matrices, atol=1e-9)



@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_bilinear_sampling_matches_scipy_within_interpolation_tolerance(dtype, scipy_bilinear):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:160]
    smooth = np.stack([xx * 1.5, yy * 2.0, (xx + yy) * 0.7], -1) + rng.normal(0, 4, (120, 160, 3))
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max / 255
    image = (np.clip(smooth, 0, 255) * top).astype(dtype)
    out_to_image = transforms.compose(transforms.rotation(23, (60, 50)), transforms.scaling(0.9),
                                      transforms.translation(12, -7))
    fill = 240 * top
    ours = transforms.sample_bilinear(image, out_to_image, (110, 150), fill, dtype).astype(float)
    reference, inside, outside = scipy_bilinear(image, out_to_image, (110, 150), fill)
    difference = np.abs(ours - reference)[inside] / top
    assert ours.shape == (110, 150, 3) and inside.mean() > 0.7
    # integer outputs are rounded (≤ 0.5); the weights are fixed-point (1/32 px): under 1.5 grey levels anywhere
    assert difference.mean() < 0.3 and difference.max() < 1.5
    assert outside.any() and np.all(ours[outside] == np.asarray(fill, dtype))


def test_fit_affine_recovers_the_matrix_that_moved_the_points():
    rng = np.random.default_rng(1)
    points = rng.uniform(0, 500, (12, 2))
    matrix = transforms.compose(transforms.rotation(33.0, (250, 250)), transforms.scaling(1.2, 0.9),
                                transforms.translation(-14.0, 40.0))
    np.testing.assert_allclose(transforms.fit_affine(points, transforms.apply_to_points(matrix, points)), matrix,
                               atol=1e-9)
