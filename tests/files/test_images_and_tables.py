"""Tests of napari_histoaffine.files: images, pyramids, landmarks, pair tables and atomic writes."""
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_histoaffine.errors import InputError
from napari_histoaffine.files.atomic import atomic_write, write_json
from napari_histoaffine.files.decode import layout
from napari_histoaffine.files.images import ImageLevel, open_pyramid, read_image, write_image
from napari_histoaffine.files.tables import Pair, read_landmarks, read_pairs_table, write_landmarks
from napari_histoaffine.transforms import apply_to_points

SHARED = Path(__file__).parents[3] / "shared"
RNG = np.random.default_rng(0)


def leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


# ---------------------------------------------------------------- landmarks and atomic writes

def test_landmarks_round_trip_exact_format_and_no_temp_files(tmp_path):
    pts = RNG.uniform(0, 5000, (7, 2))
    p = tmp_path / "lm.csv"
    write_landmarks(p, pts)
    lines = p.read_text().splitlines()
    assert lines[0] == ",X,Y" and lines[1].startswith("0,") and len(lines) == 8
    np.testing.assert_array_equal(read_landmarks(p), pts)
    assert read_landmarks(p).dtype == np.float64
    assert leftovers(tmp_path) == []


def test_read_landmarks_tolerates_case_whitespace_and_crlf(tmp_path):
    p = tmp_path / "lm.csv"
    p.write_bytes(b" , x , Y \r\n0, 1.5, 2.5\r\n1,3,4\r\n")
    np.testing.assert_array_equal(read_landmarks(p), [[1.5, 2.5], [3, 4]])


def test_read_landmarks_header_only_gives_empty(tmp_path):
    p = tmp_path / "lm.csv"
    p.write_text(",X,Y\n")
    assert read_landmarks(p).shape == (0, 2)


@pytest.mark.parametrize("text", ["", ",A,B\n0,1,2\n", ",X,Y\n0,1,abc\n", ",X,Y\n0,1,\n", ",X,Y\n0,1,inf\n"])
def test_read_landmarks_bad_input_names_file(tmp_path, text):
    p = tmp_path / "bad_landmarks.csv"
    p.write_text(text)
    with pytest.raises(InputError, match="bad_landmarks.csv"):
        read_landmarks(p)


def test_read_landmarks_missing_file(tmp_path):
    with pytest.raises(InputError, match="nowhere.csv"):
        read_landmarks(tmp_path / "nowhere.csv")


def test_failed_atomic_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    p = tmp_path / "lm.csv"
    write_landmarks(p, [[1.0, 2.0]])
    before = p.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_write(p) as f:
            f.write("half a file")
            raise RuntimeError("boom")
    assert p.read_bytes() == before
    with pytest.raises(ValueError):
        write_landmarks(p, [[1.0, 2.0, 3.0]])  # not (n, 2): fails before anything is replaced
    assert p.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_atomic_write_temp_name_keeps_suffix(tmp_path):
    with atomic_write(tmp_path / "img.png", "wb") as f:
        name = Path(f.name).name
        f.write(b"x")
    assert name.startswith(".img.tmp") and name.endswith(".png")
    assert (tmp_path / "img.png").read_bytes() == b"x"


def test_write_json_handles_numpy(tmp_path):
    p = tmp_path / "r.json"
    write_json(p, {"matrix": np.eye(3), "score": np.float32(0.5), "path": tmp_path})
    out = json.loads(p.read_text())
    assert out["matrix"][0] == [1.0, 0.0, 0.0] and out["score"] == 0.5 and out["path"] == str(tmp_path)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------- flat images

CASES = {
    "rgb": RNG.integers(0, 256, (40, 50, 3), dtype=np.uint8),
    "rgba": RNG.integers(0, 256, (40, 50, 4), dtype=np.uint8),
    "gray": RNG.integers(0, 256, (40, 50), dtype=np.uint8),
    "gray16": RNG.integers(0, 65536, (40, 50), dtype=np.uint16),
    "rgb16": RNG.integers(0, 65536, (40, 50, 3), dtype=np.uint16),
}


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("name", list(CASES))
def test_read_image_flat_lossless(tmp_path, name, suffix):
    arr = CASES[name]
    p = tmp_path / f"{name}{suffix}"
    write_image(p, arr)
    level = read_image(p, max_long_side=20)
    assert isinstance(level, ImageLevel)
    assert level.data.dtype == arr.dtype
    np.testing.assert_array_equal(level.data, arr)
    assert level.full_shape == (40, 50) and level.level == 0 and level.path == str(p)
    np.testing.assert_allclose(level.to_full, np.eye(3))
    assert leftovers(tmp_path) == []


def test_read_image_float_tiff_and_float_png_conversion(tmp_path):
    arr = RNG.random((30, 20)).astype(np.float32)
    write_image(tmp_path / "f.tif", arr)
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif").data, arr)
    write_image(tmp_path / "f.png", arr)
    png = read_image(tmp_path / "f.png").data
    assert png.dtype == np.uint8
    np.testing.assert_array_equal(png, np.round(arr * 255).astype(np.uint8))
    with pytest.raises(InputError, match="g.png"):
        write_image(tmp_path / "g.png", arr * 3)


def test_read_image_jpeg(tmp_path):
    arr = np.zeros((64, 48, 3), np.uint8)
    arr[:, 24:] = 200
    write_image(tmp_path / "a.jpg", arr)
    data = read_image(tmp_path / "a.jpg").data
    assert data.shape == (64, 48, 3) and data.dtype == np.uint8
    assert abs(float(data[:, 30:].mean()) - 200) < 5


def test_read_image_squeezes_and_moves_channels_last(tmp_path):
    chw = RNG.integers(0, 256, (3, 32, 40), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.ome.tif", chw, ome=True, metadata={"axes": "CYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "c.ome.tif").data, np.moveaxis(chw, 0, -1))
    tifffile.imwrite(tmp_path / "s.tif", chw[:1][None])  # (1, 1, 32, 40)
    assert read_image(tmp_path / "s.tif").data.shape == (32, 40)


# ---------------------------------------------------------------- pyramids

@pytest.fixture()
def pyramid(tmp_path):
    """2048x1536 RGB tiled pyramid with sub-IFD levels 1024x768 and 512x384 (tifffile's pyramid example)."""
    yy, xx = np.mgrid[0:1536, 0:2048]
    data = np.stack([xx % 256, yy % 256, (xx // 8 + yy // 8) % 256], -1).astype(np.uint8)
    p = tmp_path / "pyr.tif"
    options = dict(tile=(256, 256), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(p) as tif:
        tif.write(data, subifds=2, **options)
        tif.write(data[::2, ::2], subfiletype=1, **options)
        tif.write(data[::4, ::4], subfiletype=1, **options)
    return p, data


@pytest.fixture()
def decoded_shapes(monkeypatch):
    """Shapes of every TIFF page whose pixels are decoded (page ``asarray`` and tile ``segments``)."""
    seen = []
    for name in ("asarray", "segments"):
        original = getattr(tifffile.TiffPage, name)

        def spy(self, *args, _original=original, **kwargs):
            seen.append(tuple(self.shape))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(tifffile.TiffPage, name, spy)
    return seen


def test_pyramid_reads_only_the_chosen_level(pyramid, decoded_shapes):
    p, data = pyramid
    level = read_image(p, max_long_side=400)
    assert level.data.shape == (384, 512, 3) and level.level == 2
    assert level.full_shape == (1536, 2048)
    np.testing.assert_array_equal(level.data, data[::4, ::4])
    assert decoded_shapes and set(decoded_shapes) == {(384, 512, 3)}  # level 0 never decoded
    np.testing.assert_allclose(apply_to_points(level.to_full, [[-0.5, -0.5], [511.5, 383.5]]),
                               [[-0.5, -0.5], [2047.5, 1535.5]])
    decoded_shapes.clear()
    full = read_image(p)  # positive control: the spy does see level 0 when it is read
    assert full.level == 0 and (1536, 2048, 3) in decoded_shapes
    np.testing.assert_array_equal(full.data, data)


@pytest.mark.parametrize("max_long_side, expected", [(512, 2), (513, 1), (1024, 1), (2000, 0), (5000, 0), (None, 0)])
def test_pyramid_level_choice_never_upsamples(pyramid, max_long_side, expected):
    level = read_image(pyramid[0], max_long_side=max_long_side)
    assert level.level == expected
    assert max(level.data.shape[:2]) == 2048 // 2 ** expected


def test_open_pyramid_is_lazy_and_matches(pyramid, decoded_shapes):
    p, data = pyramid
    levels = open_pyramid(p)
    assert [lv.shape for lv in levels] == [(1536, 2048, 3), (768, 1024, 3), (384, 512, 3)]
    assert decoded_shapes == []
    np.testing.assert_array_equal(levels[2].compute(), data[::4, ::4])
    assert set(decoded_shapes) <= {(384, 512, 3)}  # whole pages decoded, if any, are the level read (else tiles)


def test_open_pyramid_flat(tmp_path):
    arr = CASES["rgb"]
    write_image(tmp_path / "a.png", arr)
    levels = open_pyramid(tmp_path / "a.png")
    assert len(levels) == 1
    np.testing.assert_array_equal(np.asarray(levels[0]), arr)


# ---------------------------------------------------------------- bad images

def _bad_images(folder: Path):
    (folder / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (folder / "garbage.tif").write_bytes(b"II*\x00" + b"\xff" * 64)
    write_image(folder / "tiny.png", np.zeros((8, 50), np.uint8))
    tifffile.imwrite(folder / "stack.tif", np.zeros((10, 32, 32), np.uint8))
    tifffile.imwrite(folder / "channels5.ome.tif", np.zeros((5, 32, 32), np.uint8), ome=True,
                     metadata={"axes": "CYX"})
    tifffile.imwrite(folder / "volume.tif", np.zeros((3, 3, 32, 32), np.uint8))
    return ["missing.png", "garbage.png", "garbage.tif", "tiny.png", "stack.tif", "channels5.ome.tif",
            "volume.tif"]


def test_bad_images_raise_input_error_naming_file(tmp_path):
    for name in _bad_images(tmp_path):
        for reader in (read_image, open_pyramid):
            with pytest.raises(InputError, match=name.replace(".", r"\.")) as info:
                reader(tmp_path / name)
            assert "\n" not in str(info.value)


def test_truncated_png_raises_input_error(tmp_path):
    p = tmp_path / "truncated.png"
    write_image(p, CASES["rgb"])
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(InputError, match="truncated.png"):
        read_image(p)


def test_empty_image_rejected():
    with pytest.raises(InputError, match="empty.tif"):
        layout((0, 30), "YX", "empty.tif")


# ---------------------------------------------------------------- pair tables

def test_read_pairs_table_resolves_paths_and_case_fallback(tmp_path):
    sub = tmp_path / "bench"
    sub.mkdir()
    (sub / "pairs.csv").write_text(
        "Target image,Source image,Target landmarks,Source landmarks,Rotation [deg]\n"
        "images/t.jpg,images/s.jpg,lm/t.csv,lm/s.csv,0\n"
        f"{tmp_path}/abs_t.png,../s2.png,,lm/s2.csv,45\n")
    pairs = read_pairs_table(sub / "pairs.csv")
    assert pairs == [
        Pair("0", str(sub / "images/s.jpg"), str(sub / "images/t.jpg"), str(sub / "lm/s.csv"), str(sub / "lm/t.csv")),
        Pair("1", str(tmp_path / "s2.png"), str(tmp_path / "abs_t.png"), str(sub / "lm/s2.csv"), None),
    ]


def test_read_pairs_table_uses_case_column(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text(",Target image,Source image,Target landmarks,Source landmarks,Case\n"
                 "0,t.jpg,s.jpg,t.csv,s.csv,lung_0\n")
    assert read_pairs_table(p)[0].case == "lung_0"


@pytest.mark.parametrize("drop", ["Target image", "Source image", "Target landmarks", "Source landmarks"])
def test_read_pairs_table_missing_column(tmp_path, drop):
    cols = [c for c in ["Target image", "Source image", "Target landmarks", "Source landmarks"] if c != drop]
    p = tmp_path / "my_pairs.csv"
    p.write_text(",".join(cols) + "\n" + ",".join("x" for _ in cols) + "\n")
    with pytest.raises(InputError, match=r"my_pairs\.csv") as info:
        read_pairs_table(p)
    assert drop in str(info.value)


def test_read_pairs_table_missing_file(tmp_path):
    with pytest.raises(InputError, match="absent_pairs.csv"):
        read_pairs_table(tmp_path / "absent_pairs.csv")


@pytest.mark.skipif(not (SHARED / "data/bench-lung-lesion-3/pairs.csv").exists(),
                    reason="shared bench-lung-lesion-3 data set not present beside the repo")
def test_shared_bench_table_reads():
    pairs = read_pairs_table(SHARED / "data/bench-lung-lesion-3/pairs.csv")
    assert len(pairs) == 50 and pairs[0].case.endswith("__0")
    first = pairs[0]
    assert Path(first.moving_image).exists() and Path(first.fixed_landmarks).exists()
    lm = read_landmarks(first.moving_landmarks)
    img = read_image(first.moving_image)
    assert lm.ndim == 2 and lm.shape[1] == 2 and img.data.ndim == 3
    assert (lm.min(0) >= 0).all() and (lm.max(0) <= [img.full_shape[1], img.full_shape[0]]).all()
