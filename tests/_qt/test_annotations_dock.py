"""Annotations in the Register dock: Shapes layers that follow the moving section, Transfer annotations,
GeoJSON import/export, on the sample pair placed by its true matrix (run under xvfb-run)."""
import numpy as np
import pytest
from napari.layers import Points, Shapes

from napari_histoaffine import transforms
from napari_histoaffine._qt import annotation_controls, register_widget
from napari_histoaffine.files.atomic import write_json
from napari_histoaffine.files.geojson import PIXEL_ORIGIN, map_document, read_geojson
from napari_histoaffine.plugin.annotations import SECTION
from napari_histoaffine.sample import make_pair

TUMOUR = [[150.0, 120.0], [330.0, 100.0], [400.0, 260.0], [300.0, 380.0], [170.0, 330.0]]  # (x, y), moving pixels
HOLE = [[240.0, 200.0], [300.0, 220.0], [260.0, 280.0]]


def document():
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "t1", "geometry": {"type": "Polygon", "coordinates": [
            (np.array(TUMOUR + TUMOUR[:1]) + PIXEL_ORIGIN).tolist(), (np.array(HOLE + HOLE[:1]) + PIXEL_ORIGIN).tolist()]},
         "properties": {"objectType": "annotation", "name": "Tumour", "classification": {"name": "Tumor", "color": [220, 30, 30]}}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [200.5, 150.5]},
         "properties": {"objectType": "annotation", "name": "mitosis"}}]}


@pytest.fixture
def dock(make_napari_viewer, monkeypatch, tmp_path):
    errors = []
    monkeypatch.setattr(annotation_controls, "show_error", errors.append)
    monkeypatch.setattr(register_widget, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-histoaffine", "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    write_json(tmp_path / "true.json", {"matrix": make_pair().matrix})
    write_json(tmp_path / "tumour.geojson", document())
    return viewer, widget, errors, tmp_path


SHOWN = 1e-4  # napari's layer transforms round to about 1e-5 px here; the data themselves are compared at 1e-6


def world(layer, vertices_rc):
    return np.array([layer.data_to_world(v) for v in vertices_rc])


def test_imported_shapes_follow_the_moving_section_and_reset_puts_them_back(qtbot, dock):
    viewer, widget, errors, folder = dock
    fixed, moving = viewer.layers["fixed (IHC)"], viewer.layers["moving (restained)"]
    shapes, points = widget.annotate.import_file(folder / "tumour.geojson", onto_moving=True)
    assert isinstance(shapes, Shapes) and isinstance(points, Points) and shapes.metadata[SECTION] == moving.name
    assert len(shapes.data) == 2 and list(shapes.features["ring"]) == [0, 1]  # the outline and its hole
    np.testing.assert_allclose(shapes.data[0], np.array(TUMOUR)[:, ::-1])  # (row, col) moving pixels
    before = np.array(shapes.affine.affine_matrix)
    widget.apply_saved_transform(folder / "true.json")
    truth = make_pair().matrix
    expected = world(fixed, transforms.apply_to_points(truth, TUMOUR)[:, ::-1])
    np.testing.assert_allclose(world(shapes, shapes.data[0]), expected, atol=SHOWN)  # on the IHC where it belongs
    np.testing.assert_allclose(world(points, points.data), world(fixed, transforms.apply_to_points(truth, [[200, 150]])[:, ::-1]), atol=SHOWN)
    widget.reset()
    np.testing.assert_array_equal(shapes.affine.affine_matrix, before)
    np.testing.assert_array_equal(points.affine.affine_matrix, before)
    widget.apply_saved_transform(folder / "true.json")  # bound by its metadata: follows again
    np.testing.assert_allclose(world(shapes, shapes.data[0]), expected, atol=SHOWN)
    assert not errors


def test_a_layer_drawn_by_hand_on_the_registered_section_follows_it_once_bound(qtbot, dock):
    viewer, widget, errors, folder = dock
    moving = viewer.layers["moving (restained)"]
    widget.apply_saved_transform(folder / "true.json")
    drawn = viewer.add_shapes([world(moving, np.array(TUMOUR)[:, ::-1])], shape_type="polygon", name="drawn")
    shown = world(drawn, drawn.data[0])
    widget.annotate.layer_combo.setCurrentText("drawn")
    widget.annotate.bind_button.click()
    np.testing.assert_allclose(world(drawn, drawn.data[0]), shown, atol=SHOWN)  # binding moves nothing
    widget.correct.change(transforms.rotation(10.0))  # a correction by hand: it follows the section
    np.testing.assert_allclose(world(drawn, drawn.data[0]), world(moving, np.array(TUMOUR)[:, ::-1]), atol=SHOWN)
    widget.reset()  # back to the section as it was: over the same moving pixels
    np.testing.assert_allclose(world(drawn, drawn.data[0]), world(moving, np.array(TUMOUR)[:, ::-1]), atol=SHOWN)
    assert not errors


def test_transfer_to_the_fixed_section_and_back_and_geojson_export(qtbot, dock):
    viewer, widget, errors, folder = dock
    fixed, moving = viewer.layers["fixed (IHC)"], viewer.layers["moving (restained)"]
    shapes = widget.annotate.transfer_file(folder / "tumour.geojson")  # before registering: refused, said once
    assert shapes is None and len(errors) == 1 and "Register" in errors[0]
    errors.clear()
    widget.apply_saved_transform(folder / "true.json")
    truth = make_pair().matrix
    original = widget.annotate.import_file(folder / "tumour.geojson", onto_moving=True)[0]
    widget.annotate.layer_combo.setCurrentText(original.name)
    widget.annotate.section_combo.setCurrentText(annotation_controls.MOVING)
    widget.annotate.transfer_button.click()
    on_fixed = viewer.layers[f"{original.name} on {fixed.name}"]
    assert on_fixed.metadata[SECTION] == fixed.name and list(on_fixed.features["name"]) == ["Tumour", "Tumour"]
    np.testing.assert_allclose(on_fixed.data[0][:, ::-1], transforms.apply_to_points(truth, TUMOUR), atol=1e-6)
    np.testing.assert_allclose(world(on_fixed, on_fixed.data[0]), world(original, original.data[0]), atol=SHOWN)
    # the same file transferred directly gives the same outline
    from_file = widget.annotate.transfer_file(folder / "tumour.geojson", from_moving=True)[0]
    np.testing.assert_allclose(from_file.data[0], on_fixed.data[0], atol=1e-9)
    # export in fixed pixels: QuPath's document mapped by the truth, properties as they were
    widget.annotate.layer_combo.setCurrentText(on_fixed.name)
    widget.annotate.section_combo.setCurrentText(annotation_controls.FIXED)
    assert widget.annotate.export_file(folder / "on_fixed.geojson")
    written, expected = read_geojson(folder / "on_fixed.geojson"), map_document(document(), truth)
    assert written["features"][0]["properties"] == document()["features"][0]["properties"]
    for ring, ring_expected in zip(written["features"][0]["geometry"]["coordinates"],
                                   expected["features"][0]["geometry"]["coordinates"]):
        np.testing.assert_allclose(ring, ring_expected, atol=1e-6)
    # and back onto the moving section: the input within 1e-6 px, bound to it
    widget.annotate.transfer_button.click()
    back = viewer.layers[f"{on_fixed.name} on {moving.name}"]
    assert back.metadata[SECTION] == moving.name and any(back is layer for layer in widget.session.annotations)
    for a, b in zip(back.data, original.data):
        np.testing.assert_allclose(a, b, atol=1e-6)
    widget.reset()
    np.testing.assert_allclose(world(back, back.data[0]), world(moving, np.array(TUMOUR)[:, ::-1]), atol=SHOWN)
    assert not errors
