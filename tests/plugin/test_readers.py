"""npe2 hooks: sample pair, ANHIR landmark reader/writer (x/y ↔ row/col), pyramidal TIFF reader."""
import numpy as np
import tifffile
from npe2 import PluginManager

from napari_histoaffine import transforms
from napari_histoaffine.files.tables import read_landmarks, write_landmarks
from napari_histoaffine.plugin.readers import get_landmark_reader, get_pyramid_reader, make_sample, write_landmarks_csv
from napari_histoaffine.sample import make_pair


def test_manifest_is_valid():
    pm = PluginManager()
    pm.discover()
    manifest = pm.get_manifest("napari-histoaffine")
    assert manifest.display_name == "HistoAffine"
    assert {w.display_name for w in manifest.contributions.widgets} >= {"Register sections"}
    assert [s.key for s in manifest.contributions.sample_data] == ["histology_pair"]


def test_sample_pair_is_exact():
    pair = make_pair()
    assert pair.fixed.shape == (512, 512, 3) and pair.moving.shape[:2] != pair.fixed.shape[:2]
    assert pair.moving.dtype == np.uint8
    np.testing.assert_allclose(transforms.apply_to_points(pair.matrix, pair.moving_landmarks), pair.fixed_landmarks)
    rows, cols = pair.moving.shape[:2]
    assert (pair.moving_landmarks >= 0).all() and (pair.moving_landmarks < [cols, rows]).all()
    # the stain changed: same structure, different colour
    assert abs(pair.moving[200:280, 200:280].mean(axis=(0, 1)) - pair.fixed.mean(axis=(0, 1))).max() > 5


def test_make_sample_layers():
    layers = make_sample()
    assert [t for *_, t in layers] == ["image", "image", "points", "points"]
    pair = make_pair()
    np.testing.assert_allclose(layers[2][0], pair.fixed_landmarks[:, ::-1])  # (row, col)


def test_landmark_reader_writer_round_trip(tmp_path):
    xy = np.array([[10.5, 3.0], [200.0, 40.25]])
    path = tmp_path / "lm.csv"
    write_landmarks(path, xy)
    reader = get_landmark_reader(str(path))
    (data, meta, kind), = reader(str(path))
    assert kind == "points" and meta["name"] == "lm landmarks"  # the file's name, never an image's
    np.testing.assert_array_equal(data, xy[:, ::-1])
    out = tmp_path / "out.csv"
    assert write_landmarks_csv(str(out), data, meta) == [str(out)]
    np.testing.assert_array_equal(read_landmarks(out), xy)
    assert out.read_text().splitlines()[0] == ",X,Y"


def test_landmark_files_opened_one_after_the_other_get_distinct_colours(tmp_path):
    """Fixed and moving landmarks opened from files must not look alike (nor like the mapped ones, magenta)."""
    write_landmarks(tmp_path / "fixed.csv", np.ones((3, 2)))
    write_landmarks(tmp_path / "moving.csv", np.ones((3, 2)))
    colours = [get_landmark_reader(str(tmp_path / f"{n}.csv"))(str(tmp_path / f"{n}.csv"))[0][1]["face_color"]
               for n in ("fixed", "moving")]
    assert colours[0] != colours[1] and "magenta" not in colours


def test_landmark_reader_declines_other_csv(tmp_path):
    other = tmp_path / "table.csv"
    other.write_text("a,b\n1,2\n")
    assert get_landmark_reader(str(other)) is None
    assert get_landmark_reader(str(tmp_path / "image.png")) is None


def test_pyramid_reader_is_lazy_multiscale(tmp_path):
    path = tmp_path / "slide.ome.tif"
    base = np.random.default_rng(0).integers(0, 255, (256, 320, 3), np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, subifds=2, photometric="rgb", tile=(64, 64))
        tif.write(base[::2, ::2], subfiletype=1, photometric="rgb", tile=(64, 64))
        tif.write(base[::4, ::4], subfiletype=1, photometric="rgb", tile=(64, 64))
    (data, meta, kind), = get_pyramid_reader(str(path))(str(path))
    assert kind == "image" and meta["multiscale"] and meta["rgb"] and meta["name"] == "slide"
    assert [d.shape for d in data] == [(256, 320, 3), (128, 160, 3), (64, 80, 3)]
    assert hasattr(data[0], "compute")
    np.testing.assert_array_equal(np.asarray(data[2]), base[::4, ::4])
    assert get_pyramid_reader(str(tmp_path / "x.csv")) is None
