"""Tests of napari_histoaffine.evaluation.metrics on hand-computed pairs."""
import numpy as np
import pytest

from napari_histoaffine.errors import InputError
from napari_histoaffine.evaluation.metrics import SUCCESS_RTRE, image_diagonal, landmark_stats, tre


def test_diagonal_uses_rows_and_cols_only():
    assert image_diagonal((30, 40)) == 50.0
    assert image_diagonal((30, 40, 3)) == 50.0


def test_rtre_of_a_known_pair():
    fixed = np.zeros((3, 2))
    moved = [[0, 0], [3, 4], [6, 8]]          # TRE 0, 5, 10 px
    initial = [[1, 0], [0, 1], [30, 40]]      # TRE 1, 1, 50 px
    np.testing.assert_allclose(tre(moved, fixed), [0, 5, 10])
    stats = landmark_stats(moved, fixed, image_diagonal((30, 40)), initial_xy=initial)  # diagonal 50
    assert stats.rtre_median == pytest.approx(0.1)
    assert stats.rtre_mean == pytest.approx(0.1)
    assert stats.rtre_max == pytest.approx(0.2)
    assert stats.success is False
    assert stats.robustness == pytest.approx(2 / 3)   # landmarks 0 and 2 got closer, 1 did not
    assert set(stats.as_dict()) == {"rtre_median", "rtre_mean", "rtre_max", "success", "robustness"}


def test_success_threshold_is_inclusive_and_robustness_needs_initial():
    fixed = np.zeros((2, 2))
    moved = [[SUCCESS_RTRE * 100, 0], [0, SUCCESS_RTRE * 100]]   # rTRE exactly 0.02 on a diagonal of 100
    stats = landmark_stats(moved, fixed, 100.0)
    assert stats.success is True and np.isnan(stats.robustness)


def test_landmark_sets_of_different_length_or_empty_are_rejected():
    with pytest.raises(InputError, match="differ in length: 3 moving vs 2 fixed"):
        tre(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(InputError, match="no landmarks"):
        landmark_stats(np.zeros((0, 2)), np.zeros((0, 2)), 10.0)


def test_tre_in_um_scales_each_axis_by_its_pixel_size():
    from napari_histoaffine.evaluation.metrics import tre_um

    fixed = np.zeros((2, 2))
    moved = [[3, 0], [3, 4]]  # (x, y) in pixels
    np.testing.assert_allclose(tre_um(moved, fixed, (0.5, 0.5)), 0.5 * tre(moved, fixed))
    np.testing.assert_allclose(tre_um(moved, fixed, (0.5, 0.25)), [1.5, np.hypot(1.5, 1.0)])
