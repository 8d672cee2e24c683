"""Round trips of the napari layer geometry: registration matrix ↔ layer affine ↔ points ↔ images."""
import numpy as np
import pytest
from napari.layers import Image, Points

from napari_histoaffine import transforms
from napari_histoaffine.errors import InputError
from napari_histoaffine.files.transform_files import elastix_affine_text, itk_tfm_text, read_affine_parameters
from napari_histoaffine.plugin.layer_transforms import (
    common_levels,
    data_to_world_matrix,
    fit_affine,
    layer_matrices,
    moving_layer_affine,
    points_between,
    rowcol_to_xy,
)

R = transforms.compose(transforms.rotation(23.0, (40, 30)), transforms.scaling(1.1, 0.9), transforms.translation(7, -5))


def test_moving_layer_affine_lands_on_fixed_pixel():
    fixed = Image(np.zeros((60, 80)), scale=(0.5, 0.25), translate=(3, -2), affine=transforms.rotation(5.0))
    moving = Image(np.zeros((50, 70)), scale=(2.0, 3.0), translate=(10, 20), affine=transforms.scaling(2.0))
    moving.affine = moving_layer_affine(R, data_to_world_matrix(fixed), layer_matrices(moving)[0])
    for row, col in [(0, 0), (12.5, 33), (49, 69)]:
        x, y = transforms.apply_to_points(R, [[col, row]])[0]
        np.testing.assert_allclose(moving.data_to_world((row, col)), fixed.data_to_world((y, x)), atol=1e-9)
    assert moving.scale.tolist() == [2.0, 3.0] and moving.translate.tolist() == [10, 20]


def test_points_between_matches_napari():
    a = Points(np.zeros((0, 2)), scale=(2, 3), translate=(1, 1))
    b = Image(np.zeros((10, 10)), scale=(0.5, 0.5), affine=transforms.rotation(30.0))
    pts = np.array([[1.0, 2.0], [5.0, -3.0]])
    out = points_between(pts, data_to_world_matrix(a), data_to_world_matrix(b))
    for p, q in zip(pts, out):
        np.testing.assert_allclose(b.data_to_world(q), a.data_to_world(p), atol=1e-9)


def test_points_and_image_agree():
    """A bright dot warped by R lands where R maps its centre; points swap x/y ↔ row/col."""
    image = np.zeros((64, 64))
    image[20, 30] = 1.0
    warped = transforms.warp_image(image, R, (80, 80), order=1)
    row, col = np.unravel_index(np.argmax(warped), warped.shape)
    x, y = transforms.apply_to_points(R, [[30, 20]])[0]
    assert abs(row - y) <= 1 and abs(col - x) <= 1
    np.testing.assert_array_equal(rowcol_to_xy([[20, 30]]), [[30, 20]])


def test_fit_affine_recovers_matrix():
    src = np.random.default_rng(0).uniform(0, 100, (10, 2))
    np.testing.assert_allclose(fit_affine(src, transforms.apply_to_points(R, src)), R, atol=1e-9)
    with pytest.raises(InputError, match="differ in length"):
        fit_affine(src, src[:5])
    with pytest.raises(InputError, match="at least 3"):
        fit_affine(src[:2], src[:2])


@pytest.mark.parametrize("writer", [lambda m: elastix_affine_text(m, (60, 80)), itk_tfm_text])
def test_itk_text_is_fixed_to_moving(writer):
    text = writer(R)
    np.testing.assert_allclose(read_affine_parameters(text), R, atol=1e-9)
    assert "CenterOfRotationPoint 0.0 0.0" in text or "FixedParameters: 0 0" in text
    line = next(ln for ln in text.splitlines() if ln.startswith(("(TransformParameters ", "Parameters:")))
    params = [float(v) for v in line.strip("()").split()[1:]]
    fixed_pt = np.array([12.0, 34.0])  # ITK: T(fixed) = A @ p + t is the moving point
    moving_pt = np.array(params[:4]).reshape(2, 2) @ fixed_pt + params[4:6]
    np.testing.assert_allclose(transforms.apply_to_points(R, [moving_pt])[0], fixed_pt, atol=1e-6)


def test_elastix_size_is_columns_rows():
    assert "(Size 80 60)" in elastix_affine_text(R, (60, 80))


def test_common_levels_meet_at_one_pixel_size():
    """A 4-level pyramid against one large array (B3), and layers of different scales."""
    pyramid, single = [(4000, 3000), (2000, 1500), (1000, 750), (500, 375)], [(4000, 3000)]
    (level_a, factor_a), (level_b, factor_b) = common_levels([pyramid, single], [1.0, 1.0], 512)
    assert level_a == 2 and level_b == 0
    target = 4000 / 512
    assert np.isclose(4000 / pyramid[level_a][0] / factor_a, target) and np.isclose(1 / factor_b, target)
    # the same tissue at half the pixel count but a scale of 2: the same world pixel size
    (level_a, factor_a), (level_b, factor_b) = common_levels([pyramid, [(2000, 1500)]], [1.0, 2.0], 512)
    assert np.isclose(4000 / pyramid[level_a][0] / factor_a, 2 * 2000 / 2000 / factor_b)
    # small images are used as they are; of two scales the finer image comes down to the coarser one
    assert common_levels([[(200, 100)], [(150, 150)]], [1.0, 1.0], 512) == [(0, 1.0), (0, 1.0)]
    assert common_levels([[(200, 100)], [(150, 150)]], [1.0, 2.0], 512) == [(0, 0.5), (0, 1.0)]


def test_itk_and_elastix_texts_with_a_centre_of_rotation_are_read_right():
    """Files written elsewhere often turn about a centre: A (p - c) + c + t maps fixed to moving points."""
    ours = transforms.compose(transforms.rotation(20.0), transforms.translation(5.0, -3.0))
    fixed_to_moving = transforms.invert(ours)
    centre = np.array([40.0, 25.0])
    linear = fixed_to_moving[:2, :2]
    shift = fixed_to_moving[:2, 2] - centre + linear @ centre
    params = " ".join(f"{v:.12g}" for v in [*linear.ravel(), *shift])
    itk = f"#Insight Transform File V1.0\nTransform: AffineTransform_double_2_2\nParameters: {params}\nFixedParameters: 40 25\n"
    elastix = f"(Transform \"AffineTransform\")\n(TransformParameters {params})\n(CenterOfRotationPoint 40 25)\n"
    for text in (itk, elastix):
        np.testing.assert_allclose(read_affine_parameters(text), ours, atol=1e-9)
    with pytest.raises(InputError, match="6 numbers"):
        read_affine_parameters("(TransformParameters 1 0 0 1)")
