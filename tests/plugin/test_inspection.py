"""The inspection views' pixels: which image each part of a view comes from."""
import numpy as np
import pytest

from napari_histoaffine import transforms
from napari_histoaffine.plugin import inspection


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    fixed = rng.random((40, 60)).astype(np.float32)
    return fixed, 1.0 - fixed  # a "warped moving" image that differs everywhere


def test_checkerboard_alternates_tiles(pair):
    fixed, warped = pair
    board = inspection.checkerboard(fixed, warped, 10)
    np.testing.assert_array_equal(board[:10, :10], fixed[:10, :10])
    np.testing.assert_array_equal(board[:10, 10:20], warped[:10, 10:20])
    np.testing.assert_array_equal(board[10:20, 10:20], fixed[10:20, 10:20])


def test_swipe_puts_the_moving_image_left_of_the_curtain(pair):
    fixed, warped = pair
    curtain = inspection.swipe(fixed, warped, 0.25)
    np.testing.assert_array_equal(curtain[:, :15], warped[:, :15])
    np.testing.assert_array_equal(curtain[:, 15:], fixed[:, 15:])


def test_difference_is_zero_for_the_same_image_and_false_colour_is_grey_where_they_agree(pair):
    fixed, warped = pair
    assert inspection.difference(fixed, fixed).max() == 0.0 and inspection.difference(fixed, warped).max() > 0.5
    same = inspection.false_colour(fixed, fixed)
    np.testing.assert_allclose(same[..., 0], same[..., 1])
    assert same.shape == (*fixed.shape, 3)


def test_colour_images_stay_colour_and_the_warp_is_white_outside():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    warped = inspection.warped_onto_fixed(rgb, (20, 30), transforms.translation(10, 0))
    assert warped.shape == (20, 30, 3) and (warped[:, :9] == 1.0).all()
    assert inspection.checkerboard(rgb, warped, 5).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="unknown view"):
        inspection.view("mosaic", rgb, warped, 5)


def test_a_region_view_samples_both_images_at_the_grid_it_is_placed_on():
    """The region's grid: about one pixel per screen pixel, placed on fixed pixels; pyramids read at the level that fits."""
    rows, cols = np.indices((400, 600), dtype=np.float32)
    fixed = (rows + 2 * cols) / 1600  # a ramp: bilinear samples are exact, so positions can be checked
    grid = inspection.grid_in_view([[100, 200], [100, 300], [150, 200], [150, 300]], (500, 1000), fixed.shape)
    assert grid.step == pytest.approx(0.1) and grid.shape == (500, 1000)
    at_r, at_c = np.indices(grid.shape) * grid.step + np.array(grid.origin)[:, None, None]
    expected = (at_r + 2 * at_c) / 1600  # the fixed image at each output pixel's place
    shift = transforms.translation(7.0, -3.0)  # moving → fixed: the moving image is the fixed one moved back
    moving = transforms.warp_image(fixed, transforms.invert(shift), fixed.shape)
    for name, parameter in (("checkerboard", 1e9), ("checkerboard", 2.0), ("swipe", 1.0), ("swipe", 0.0)):
        view = inspection.region_view(name, parameter, grid, [fixed], [moving], shift)
        np.testing.assert_allclose(view, expected, atol=2e-3, err_msg=name)
    # tiles of 2 fixed pixels, anchored to the image: the tile boundary at fixed row 102 is 20 output rows apart
    board = inspection.region_view("checkerboard", 2.0, grid, [fixed], [np.zeros_like(fixed)], shift)
    assert np.all(board[:20, :20] > 0.3) and np.all(board[20:40, :20] == 0.0)  # fixed rows 100-101, then moving
    # a pyramid: the zoomed-out view reads the coarse level (a level of constant 0.5 shows as such)
    coarse = np.full((100, 150), 0.5, np.float32)
    whole = inspection.grid_in_view([[-0.5, -0.5], [399.5, 599.5]], (100, 150), fixed.shape)
    assert whole.step == pytest.approx(4.0) and whole.shape == (100, 150)
    np.testing.assert_allclose(inspection.sample_region([fixed, coarse], whole.to_fixed_xy(), whole.shape), 0.5)
    assert inspection.grid_in_view([[500, 700], [600, 800]], (100, 100), fixed.shape) is None  # out of the image
