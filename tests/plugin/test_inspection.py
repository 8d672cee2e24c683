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
