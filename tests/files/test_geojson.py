"""GeoJSON annotations (QuPath's conventions) mapped through saved transforms, in the library and the CLI."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.errors import InputError
from napari_histoaffine.files.atomic import write_json
from napari_histoaffine.files.geojson import PIXEL_ORIGIN, geometries, map_document, read_geojson
from napari_histoaffine.files.tables import read_landmarks

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "anhir-lung-lesion-3"
MATRIX = transforms.compose(transforms.rotation(33, (200, 150)), transforms.scaling(1.3, 0.9),
                            transforms.translation(-17.25, 40.5))
MIRRORED = transforms.compose(transforms.mirror_x(120), MATRIX)
OUTER = [[100.0, 100.0], [400.0, 110.0], [380.0, 360.0], [120.0, 340.0], [100.0, 100.0]]
HOLE = [[200.0, 200.0], [220.0, 280.0], [300.0, 260.0], [200.0, 200.0]]


def qupath_document():
    """A QuPath-style export: a tumour with a hole, a multipolygon, points, a line and a cell with its nucleus."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "5d3c6a2e-0b1f-4c55-9d0e-8a7c1b2d3e4f",
         "geometry": {"type": "Polygon", "coordinates": [OUTER, HOLE]},
         "properties": {"objectType": "annotation", "name": "Tumour 1", "isLocked": False,
                        "classification": {"name": "Tumor", "color": [200, 0, 0]}}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[10.0, 10.0], [60.0, 12.0], [40.0, 70.0], [10.0, 10.0]]],
            [[[500.0, 500.0], [560.0, 500.0], [560.0, 540.5], [500.0, 500.0]]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [150, 200, 150]}}},
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[30.5, 40.5], [77.0, 12.25]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Immune cells"}}},
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0.0, 0.0], [50.0, 80.0], [90.0, 20.0]]},
         "properties": {"objectType": "annotation", "name": "invasive margin"}},
        {"type": "Feature", "bbox": [1.0, 2.0, 3.0, 4.0],
         "geometry": {"type": "Polygon", "coordinates": [[[300.0, 40.0], [320.0, 40.0], [320.0, 60.0], [300.0, 40.0]]]},
         "properties": {"objectType": "cell", "measurements": {"Nucleus: Area": 81.5},
                        "nucleusGeometry": {"type": "Polygon", "coordinates": [
                            [[305.0, 45.0], [310.0, 45.0], [310.0, 50.0], [305.0, 45.0]]]}}},
    ]}


def positions(document) -> np.ndarray:
    def flat(c):
        return [c] if not isinstance(c[0], list) else [p for x in c for p in flat(x)]
    return np.array([p for g in geometries(document) for p in flat(g["coordinates"])], float)


def signed_area(ring) -> float:
    xy = np.asarray(ring, float)
    return 0.5 * float(np.sum(xy[:-1, 0] * xy[1:, 1] - xy[1:, 0] * xy[:-1, 1]))


def without_coordinates(document):
    out = copy.deepcopy(document)
    for g in geometries(out):
        g["coordinates"] = None
    for f in out["features"]:
        f.pop("bbox", None)
    return out


@pytest.fixture
def files(tmp_path):
    write_json(tmp_path / "transform.json", {"matrix": MATRIX})
    write_json(tmp_path / "mirrored.json", {"matrix": MIRRORED})
    write_json(tmp_path / "in.geojson", qupath_document())
    return tmp_path


@pytest.mark.parametrize("name", ["transform.json", "mirrored.json"])
def test_cli_forward_then_inverse_returns_the_input(files, name, capsys):
    assert main(["transfer-annotations", str(files / name), str(files / "in.geojson"), "--out", str(files / "f.geojson")]) == 0
    assert "6 geometries" in capsys.readouterr().out  # five features' geometries and the cell's nucleus
    assert main(["transfer-annotations", str(files / name), str(files / "f.geojson"), "--out", str(files / "b.geojson"),
                 "--inverse"]) == 0
    forward, back, original = (read_geojson(files / n) for n in ("f.geojson", "b.geojson", "in.geojson"))
    assert np.abs(positions(forward) - positions(original)).max() > 10  # it moved
    # the same points in the same order (a mirror reverses the rings twice: back in their order)
    np.testing.assert_allclose(positions(back), positions(original), atol=1e-6)
    assert without_coordinates(back) == without_coordinates(original)


def test_polygon_with_hole_survives_and_keeps_its_winding(files):
    for matrix in (MATRIX, MIRRORED):
        mapped = map_document(qupath_document(), matrix)["features"][0]["geometry"]
        assert mapped["type"] == "Polygon" and len(mapped["coordinates"]) == 2
        outer, hole = (np.array(r) for r in mapped["coordinates"])
        assert np.array_equal(outer[0], outer[-1]) and np.array_equal(hole[0], hole[-1])  # rings stay closed
        assert np.sign(signed_area(outer)) == np.sign(signed_area(OUTER))  # winding kept, mirror or not
        assert np.sign(signed_area(hole)) == np.sign(signed_area(HOLE))
        from matplotlib.path import Path as Polyline
        assert Polyline(outer).contains_points(hole[:-1]).all()  # the hole is still inside
        expected = transforms.apply_to_points(matrix, np.array(OUTER) - PIXEL_ORIGIN) + PIXEL_ORIGIN
        order = slice(None, None, -1) if matrix is MIRRORED else slice(None)
        np.testing.assert_allclose(outer, expected[order], atol=1e-9)


def test_qupath_properties_survive_unchanged_apart_from_coordinates(files):
    original = qupath_document()
    mapped = map_document(original, MATRIX)
    assert original == qupath_document()  # the input is not touched
    assert without_coordinates(mapped) == without_coordinates(original)
    assert mapped["features"][0]["id"] == original["features"][0]["id"]
    nucleus = np.array(mapped["features"][4]["properties"]["nucleusGeometry"]["coordinates"][0])
    np.testing.assert_allclose(nucleus[0], transforms.apply_to_points(MATRIX, [[304.5, 44.5]])[0] + 0.5)
    cell = np.array(mapped["features"][4]["geometry"]["coordinates"][0])
    np.testing.assert_allclose(mapped["features"][4]["bbox"], [*cell.min(axis=0), *cell.max(axis=0)])


def test_pixel_origin_is_qupaths_corner():
    # our x -> 2x keeps pixel centre 0 at 0; QuPath's centre of pixel 0 is 0.5 and stays 0.5
    point = {"type": "Point", "coordinates": [0.5, 0.5]}
    assert map_document(point, transforms.scaling(2.0))["coordinates"] == [0.5, 0.5]
    assert map_document({"type": "Point", "coordinates": [1.5, 2.5, 7.0]}, transforms.scaling(2.0))["coordinates"] == [
        2.5, 4.5, 7.0]  # a z value is kept


def test_series_chain_is_one_section_then_the_reference_back(files, tmp_path):
    other = transforms.compose(transforms.rotation(-80, (10, 20)), transforms.translation(5, 5))
    write_json(tmp_path / "b.json", {"matrix": other})
    args = ["transfer-annotations", str(files / "transform.json"), str(files / "in.geojson"), "--then-inverse",
            str(tmp_path / "b.json"), "--out", str(tmp_path / "ab.geojson")]
    assert main(args) == 0
    expected = map_document(qupath_document(), transforms.compose(MATRIX, transforms.invert(other)))
    np.testing.assert_allclose(positions(read_geojson(tmp_path / "ab.geojson")), positions(expected), atol=1e-9)


@pytest.mark.parametrize("text, message", [
    ("{not json", "Cannot read GeoJSON"),
    ('{"type": "Topology"}', "not GeoJSON that holds annotations"),
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[["a", 1]]]}}', "not lists of [x, y] numbers"),
    ('[1, 2]', "not GeoJSON"),
])
def test_bad_input_is_one_line_and_exit_2(files, text, message, capsys):
    (files / "bad.geojson").write_text(text)
    out = files / "out.geojson"
    assert main(["transfer-annotations", str(files / "transform.json"), str(files / "bad.geojson"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("histoaffine: error:")
    assert not out.exists()
    with pytest.raises(InputError):
        read_geojson(files / "bad.geojson")


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/anhir-lung-lesion-3 (a real stain pair)")
def test_landmarks_as_geojson_points_go_where_the_landmark_mapping_puts_them(tmp_path, capsys):
    moving, fixed = (SHARED / "images" / f"29-041-Izd2-w35-{s}.jpg" for s in ("CD31-3-les3", "He-les3"))
    landmarks = SHARED / "landmarks" / "29-041-Izd2-w35-CD31-3-les3.csv"
    assert main(["register", str(moving), str(fixed), "--moving-landmarks", str(landmarks), "--out", str(tmp_path)]) == 0
    source = read_landmarks(landmarks)
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": (source + PIXEL_ORIGIN).tolist()},
         "properties": {"objectType": "annotation", "name": "landmarks"}}]}
    write_json(tmp_path / "landmarks.geojson", points)
    assert main(["transfer-annotations", str(tmp_path / "transform.json"), str(tmp_path / "landmarks.geojson"),
                 "--out", str(tmp_path / "mapped.geojson")]) == 0
    mapped = np.array(json.loads((tmp_path / "mapped.geojson").read_text())["features"][0]["geometry"]["coordinates"])
    np.testing.assert_allclose(mapped - PIXEL_ORIGIN, read_landmarks(tmp_path / "warped_landmarks.csv"), atol=1e-6)
