"""The Qt-free registration session on bare napari layers (no viewer, no Qt): geometry, Reset, landmarks, exports."""
import numpy as np
import pytest
from napari.components import LayerList
from napari.layers import Image, Points

from napari_histoaffine import transforms
from napari_histoaffine.errors import InputError
from napari_histoaffine.files.tables import read_landmarks
from napari_histoaffine.files.transform_files import read_transform_file
from napari_histoaffine.plugin.layer_transforms import rowcol_to_xy
from napari_histoaffine.plugin.session import (
    OVERLAY_OPACITY,
    PickedLayers,
    RegistrationInputs,
    RegistrationSession,
)
from napari_histoaffine.registration.options import RegistrationOptions
from napari_histoaffine.registration.pipeline import register
from napari_histoaffine.registration.results import NO_VERDICT, RegistrationResult
from napari_histoaffine.registration.weights import default_weights_path

# the moving section and its landmarks start turned and shifted in the world, half transparent: all must come back
MOVING_AFFINE = transforms.xy_to_rowcol(transforms.compose(transforms.rotation(30.0), transforms.translation(7, -4)))


@pytest.fixture
def pair_layers(sample_pair):
    """The sample pair as napari layers of different pixel sizes and positions, in a bare layer list."""
    fixed_geometry = {"scale": (0.5, 0.5), "translate": (10.0, 20.0)}
    moving_geometry = {"scale": (2.0, 2.0), "translate": (-5.0, 3.0), "affine": MOVING_AFFINE}
    picked = PickedLayers(
        Image(sample_pair.fixed, rgb=True, name="fixed", **fixed_geometry),
        Image(sample_pair.moving, rgb=True, name="moving", opacity=0.7, **moving_geometry),
        Points(rowcol_to_xy(sample_pair.fixed_landmarks), name="fixed landmarks",
               features={"index": np.arange(36) + 100}, **fixed_geometry),
        Points(rowcol_to_xy(sample_pair.moving_landmarks), name="moving landmarks", opacity=0.9, **moving_geometry))
    layers = LayerList(list(picked))
    inputs = RegistrationInputs(sample_pair.moving, sample_pair.fixed, RegistrationOptions(),
                                sample_pair.moving.shape[:2], sample_pair.fixed.shape[:2])
    return RegistrationSession(layers), picked, inputs


def result_with(matrix, inputs) -> RegistrationResult:
    angle, mirrored = transforms.rotation_and_mirror(matrix)
    return RegistrationResult(np.asarray(matrix, float), inputs.moving_full_shape, inputs.fixed_full_shape, ["test"],
                              {}, 0.1, 0.9, angle, mirrored, [])


def world(layer, points_rc) -> np.ndarray:
    return np.array([layer.data_to_world(p) for p in points_rc])


def test_an_engine_result_places_the_moving_layer_and_its_landmarks_where_the_matrix_says(sample_pair):
    # pixels of one size (the engine's range of scales), elsewhere in the world
    fixed = Image(sample_pair.fixed, rgb=True, name="fixed", scale=(0.5, 0.5), translate=(10.0, 20.0))
    moving = Image(sample_pair.moving, rgb=True, name="moving", scale=(0.5, 0.5), affine=MOVING_AFFINE)
    moving_pts = Points(rowcol_to_xy(sample_pair.moving_landmarks), name="moving landmarks", scale=(0.5, 0.5),
                        affine=MOVING_AFFINE)
    picked = PickedLayers(fixed, moving, None, moving_pts)
    session = RegistrationSession(LayerList([layer for layer in picked if layer is not None]))
    options = RegistrationOptions(model="default" if default_weights_path() else None)
    inputs = RegistrationInputs.from_layers(picked, options)
    assert inputs.moving_full_shape == sample_pair.moving.shape[:2] and inputs.fixed_full_shape == (512, 512)
    result = register(inputs.moving, inputs.fixed, **inputs.keywords())
    session.show(picked, inputs, result)

    moving_rc = rowcol_to_xy(sample_pair.moving_landmarks)
    onto_fixed = rowcol_to_xy(transforms.apply_to_points(result.matrix, sample_pair.moving_landmarks))
    np.testing.assert_allclose(world(moving, moving_rc), world(fixed, onto_fixed), atol=1e-9)
    np.testing.assert_allclose(world(moving_pts, moving_pts.data), world(moving, moving_rc), atol=1e-9)
    np.testing.assert_allclose(session.mapped_landmarks(), rowcol_to_xy(onto_fixed), atol=1e-9)
    assert moving.opacity == OVERLAY_OPACITY and session.adjusted is None
    np.testing.assert_array_equal(moving.data, sample_pair.moving)  # pixels untouched
    truth = transforms.apply_to_points(sample_pair.matrix, sample_pair.moving_landmarks)
    assert np.median(np.hypot(*(rowcol_to_xy(onto_fixed) - truth).T)) < 0.005 * np.hypot(512, 512)

    session.show_masks()  # over their images: the fixed mask's far corner on the fixed image's corner
    fixed_mask, moving_mask = session.mask_layers
    assert fixed_mask in session.layers and moving_mask.data.max() == 2
    np.testing.assert_allclose(fixed_mask.data_to_world(np.array(fixed_mask.data.shape) - 0.5),
                               fixed.data_to_world(np.array([512, 512]) - 0.5), atol=1e-6)
    session.reset()
    assert [layer.name for layer in session.layers] == ["fixed", "moving", "moving landmarks"]


def test_reset_restores_affine_and_opacity_exactly(pair_layers, sample_pair):
    session, picked, inputs = pair_layers
    before = {layer.name: (np.array(layer.affine.affine_matrix), layer.opacity) for layer in picked}
    names = [layer.name for layer in session.layers]
    session.show(picked, inputs, result_with(sample_pair.matrix, inputs))
    session.correct(transforms.rotation(3.0))
    session.toggle_overlay()
    assert picked.moving.opacity == 1.0 and not np.allclose(picked.moving_points.affine.affine_matrix, MOVING_AFFINE)
    session.reset()
    for layer in picked:
        np.testing.assert_array_equal(layer.affine.affine_matrix, before[layer.name][0])
        assert layer.opacity == before[layer.name][1]
    assert [layer.name for layer in session.layers] == names and session.result is None
    assert session.registered_points is None and session.picked is None


def test_mapped_landmarks_and_their_errors_follow_the_matrix_and_the_landmark_layers(pair_layers, sample_pair):
    session, picked, inputs = pair_layers
    fired = []
    session.events.landmarks.connect(fired.append)
    session.show(picked, inputs, result_with(transforms.compose(sample_pair.matrix, transforms.translation(3, 4)),
                                             inputs))
    np.testing.assert_allclose(session.mapped_landmarks(), sample_pair.fixed_landmarks + (3, 4), atol=1e-9)
    registered = session.registered_points
    assert registered in session.layers and registered.name == "moving landmarks (registered)"
    np.testing.assert_allclose(world(registered, registered.data),
                               world(picked.fixed, rowcol_to_xy(sample_pair.fixed_landmarks + (3, 4))), atol=1e-9)
    errors = session.landmark_errors()
    np.testing.assert_allclose(errors.tre, 5.0, atol=1e-9)
    assert errors.diagonal == pytest.approx(np.hypot(512, 512)) and list(errors.ids) == list(range(100, 136))

    fired.clear()
    moved = picked.fixed_points.data.copy()
    moved[5] = rowcol_to_xy(sample_pair.fixed_landmarks[5] + (3, 4))[0]  # onto its mapped partner
    picked.fixed_points.data = moved
    errors = session.landmark_errors()
    assert fired and errors.tre[5] == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(np.delete(errors.tre, 5), 5.0, atol=1e-9)
    picked.fixed_points.data = moved[:-1]
    with pytest.raises(InputError, match="differ in length"):
        session.landmark_errors()


def test_refit_from_landmarks_finds_the_true_matrix(pair_layers, sample_pair):
    session, picked, inputs = pair_layers
    session.show(picked, inputs, result_with(transforms.compose(sample_pair.matrix, transforms.rotation(10.0)), inputs))
    assert session.landmark_errors().tre.min() > 1.0
    session.refit_from_landmarks()
    np.testing.assert_allclose(session.result.matrix, sample_pair.matrix, atol=1e-6)
    assert session.adjusted == "refit" and session.landmark_errors().tre.max() < 1e-6
    session.reset()
    session.show(picked._replace(fixed_points=None), inputs, result_with(sample_pair.matrix, inputs))
    with pytest.raises(InputError, match="both a fixed and a moving landmark layer"):
        session.refit_from_landmarks()


def test_corrections_by_hand_compose_about_the_section_centre(pair_layers, sample_pair):
    session, picked, inputs = pair_layers
    session.show(picked, inputs, result_with(sample_pair.matrix, inputs))
    rows, cols = inputs.moving_full_shape
    centre = transforms.apply_to_points(sample_pair.matrix, [[(cols - 1) / 2, (rows - 1) / 2]])[0]
    session.correct(transforms.mirror_x())
    assert session.adjusted == "by hand"
    np.testing.assert_allclose(session.result.matrix, transforms.compose(
        sample_pair.matrix, transforms.translation(*-centre), transforms.mirror_x(), transforms.translation(*centre)),
        atol=1e-9)
    session.correct(transforms.mirror_x())
    np.testing.assert_allclose(session.result.matrix, sample_pair.matrix, atol=1e-9)


@pytest.mark.parametrize("suffix", [".json", ".txt", ".tfm"], ids=["json", "elastix", "itk"])
def test_exports_read_back_and_a_saved_transform_places_the_layer_again(pair_layers, sample_pair, tmp_path, suffix):
    session, picked, inputs = pair_layers
    session.show(picked, inputs, result_with(transforms.compose(sample_pair.matrix, transforms.translation(3, 4)),
                                             inputs))
    placed = np.array(picked.moving.affine.affine_matrix)
    path = tmp_path / f"transform{suffix}"
    session.export_transform(path)
    np.testing.assert_allclose(read_transform_file(path), session.result.matrix, atol=1e-6)
    session.export_landmarks(tmp_path / "landmarks.csv")
    np.testing.assert_array_equal(read_landmarks(tmp_path / "landmarks.csv"), session.mapped_landmarks())
    session.reset()
    session.apply_transform_file(path, picked, inputs)
    np.testing.assert_allclose(picked.moving.affine.affine_matrix, placed, atol=1e-6)
    assert session.result.verdict is None and session.result.headline == NO_VERDICT


def test_a_removed_layer_drops_the_result_and_a_result_for_removed_layers_is_refused(pair_layers, sample_pair):
    session, picked, inputs = pair_layers
    dropped = []
    session.events.dropped.connect(lambda event: dropped.append(event.value))
    session.show(picked, inputs, result_with(sample_pair.matrix, inputs))
    session.layers.remove(picked.moving)
    assert dropped == ["moving"] and session.result is None and session.registered_points is None
    np.testing.assert_array_equal(picked.moving_points.affine.affine_matrix, MOVING_AFFINE)
    assert picked.moving_points.opacity == 0.9
    with pytest.raises(InputError, match="removed while it ran"):
        session.show(picked, inputs, result_with(sample_pair.matrix, inputs))
    assert session.result is None and picked.moving_points.opacity == 0.9


def test_a_slide_export_needs_the_moving_layer_on_disk(pair_layers, sample_pair, tmp_path):
    session, picked, inputs = pair_layers
    session.show(picked, inputs, result_with(sample_pair.matrix, inputs))
    with pytest.raises(InputError, match="no file on disk"):
        session.slide_warp(tmp_path / "slide.ome.tif")
    assert not list(tmp_path.iterdir())
