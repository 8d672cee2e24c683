"""Whole-slide access: tile-level reads, pyramid level choice, tiled warps to pyramidal OME-TIFF, napari reader."""
import sys

import numpy as np
import pytest
import tifffile

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.errors import InputError
from napari_histoaffine.files.atomic import write_json
from napari_histoaffine.files.images import open_pyramid, read_image, write_image
from napari_histoaffine.files.openslide_levels import openslide_pyramid, openslide_sources
from napari_histoaffine.files.tiles import TileSource, level_sources, open_level
from napari_histoaffine.plugin.readers import get_pyramid_reader
from napari_histoaffine.warp import level_for_warp, warp_steps, warp_to_ome_tiff

RNG = np.random.default_rng(1)


def _image(rows=300, cols=420):
    yy, xx = np.mgrid[0:rows, 0:cols]
    smooth = np.stack([xx % 256, yy % 256, (xx // 4 + yy // 8) % 256], -1)
    return np.clip(smooth + RNG.integers(-20, 20, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture()
def slide(tmp_path):
    """A 300x420 RGB pyramid with 32-px tiles and two halved sub-IFD levels (lossless)."""
    data = _image()
    path = tmp_path / "moving.ome.tif"
    options = dict(tile=(32, 32), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(data, subifds=2, **options)
        tif.write(data[::2, ::2], subfiletype=1, **options)
        tif.write(data[::4, ::4], subfiletype=1, **options)
    return path, data


def test_tile_source_reads_only_the_tiles_of_a_region(slide):
    path, data = slide
    source = level_sources(path)[0]
    assert isinstance(source, TileSource) and source.chunk == (32, 32)
    np.testing.assert_array_equal(source.read(40, 100, 70, 130), data[40:100, 70:130])
    assert source.decoded == 3 * 3  # rows 32..127, cols 64..159
    np.testing.assert_array_equal(source.read(-5, 999, 400, 999), data[:, 400:])


@pytest.mark.parametrize("kind", ["strips", "gray-tiles"])
def test_tile_source_strips_and_gray(tmp_path, kind):
    data = _image()[..., 1]
    path = tmp_path / "g.tif"
    options = {"rowsperstrip": 24} if kind == "strips" else {"tile": (48, 64)}
    tifffile.imwrite(path, data, compression="zlib", **options)
    source = level_sources(path)[0]
    assert isinstance(source, TileSource)
    np.testing.assert_array_equal(source.read(17, 250, 33, 401), data[17:250, 33:401])


def test_open_pyramid_chunks_are_tiles_and_values_match(slide):
    path, data = slide
    levels = open_pyramid(path)
    level0 = open_level(path, 0, chunk=64)
    assert level0.chunks[0][:2] == (64, 64) and level0.chunks[1][:2] == (64, 64)
    np.testing.assert_array_equal(level0[50:170, 10:300].compute(), data[50:170, 10:300])
    np.testing.assert_array_equal(levels[1].compute(), data[::2, ::2])


def test_level_choice_for_warps(slide):
    path, _ = slide
    sources = level_sources(path)
    assert level_for_warp(sources, np.eye(3)) == (0, 1)
    assert level_for_warp(sources, transforms.scaling(2.0)) == (1, 1)
    assert level_for_warp(sources, transforms.scaling(3.0)) == (1, 1)
    assert level_for_warp(sources, transforms.scaling(9.0)) == (2, 2)  # level 2 (×4) averaged by 2
    rotated = transforms.compose(transforms.scaling(4.1), transforms.rotation(30))
    assert level_for_warp(sources, rotated)[0] == 2
    # overviews may take a level up to 20 % coarser than their grid; full resolution never does
    assert level_for_warp(sources, transforms.scaling(1.8)) == (0, 1)
    assert level_for_warp(sources, transforms.scaling(1.8), coarser=1.2) == (1, 1)


MATRIX = transforms.compose(transforms.rotation(17, (210, 150)), transforms.scaling(1.07), transforms.translation(-9, 12))


def test_tiled_warp_equals_scipys_warp_and_is_pyramidal(slide, tmp_path, scipy_bilinear):
    path, data = slide
    out = tmp_path / "warped.ome.tif"
    fixed_shape = (280, 400)
    shapes = warp_to_ome_tiff(path, MATRIX, fixed_shape, out, tile=64, write_tile=32, compression="zlib",
                              background=0)
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and tif.pages[0].is_tiled and tif.pages[0].tilewidth == 32
        levels = tif.series[0].levels
        assert [lv.shape for lv in levels] == [(*s, 3) for s in shapes] and shapes[1] == (140, 200)
        # a reduced level is the same warp sampled on its own grid, from the moving level at most 20 % coarser
        # than that grid (here level 1: 2 / 1.07 moving px a pixel); rounding to 8 bits and OpenCV's 1/32-px
        # weights stay within a grey level
        level_1 = data[::2, ::2]  # the fixture's level 1
        to_level_1 = transforms.compose(transforms.resample_matrix(level_1.shape, data.shape), MATRIX,
                                        transforms.resample_matrix(fixed_shape, (140, 200)))
        for level, (reference, inside, _) in (
                (levels[0], scipy_bilinear(data, transforms.invert(MATRIX), fixed_shape)),
                (levels[1], scipy_bilinear(level_1, transforms.invert(to_level_1), (140, 200)))):
            difference = np.abs(level.asarray().astype(float) - reference)[inside]
            assert inside.mean() > 0.6 and difference.mean() < 0.3 and difference.max() <= 1.5
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_warp_pads_with_the_slides_own_background(tmp_path):
    """A bright-field slide (white around the tissue), turned: the corners it leaves are white, not black;
    the CLI takes another colour."""
    data = np.full((200, 260, 3), 255, np.uint8)
    data[40:160, 50:210] = _image(120, 160)
    path = tmp_path / "white.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(data, subifds=1, tile=(32, 32), photometric="rgb", compression="zlib")
        tif.write(data[::2, ::2], subfiletype=1, tile=(32, 32), photometric="rgb", compression="zlib")
    turn = transforms.rotation(30.0, (129.5, 99.5))
    out = tmp_path / "turned.ome.tif"
    warp_to_ome_tiff(path, turn, (200, 260), out, tile=64, write_tile=32, compression="zlib")
    warped = tifffile.imread(out)
    assert (warped[0, 0] == 255).all() and (warped[-1, -1] == 255).all()
    tuned = tmp_path / "blue.json"
    write_json(tuned, {"matrix": turn.tolist(), "fixed_shape": [200, 260]})
    assert main(["warp", str(path), str(tuned), "--out", str(tmp_path / "blue.ome.tif"), "--background", "0,0,255",
                 "--compression", "zlib"]) == 0
    assert tifffile.imread(tmp_path / "blue.ome.tif")[0, 0].tolist() == [0, 0, 255]


def test_warp_reads_bounded_regions(slide, tmp_path, monkeypatch):
    path, _ = slide
    seen = []
    original = TileSource.read

    def spy(self, y0, y1, x0, x1):
        seen.append((y1 - y0) * (x1 - x0))
        return original(self, y0, y1, x0, x1)

    monkeypatch.setattr(TileSource, "read", spy)
    warp_to_ome_tiff(path, MATRIX, (280, 400), tmp_path / "w.ome.tif", tile=64, write_tile=32)
    # a block (64 x 64 px) maps to at most 2 x 2 moving pixels a pixel (coarser → next level): never a level
    assert seen and max(seen) < 8 * 64 * 64 < 300 * 420


def test_a_cancelled_warp_leaves_the_old_file_and_no_temporary(slide, tmp_path):
    path, _ = slide
    out = tmp_path / "w.ome.tif"
    out.write_bytes(b"the user's earlier export")
    steps = warp_steps(path, MATRIX, (280, 400), out, tile=64, write_tile=32)
    fractions = [next(steps).fraction for _ in range(3)]
    steps.close()  # what Cancel does to the worker's generator
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
    assert out.read_bytes() == b"the user's earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moving.ome.tif", "w.ome.tif"]


def test_warp_progress_reaches_one_and_matches_the_plain_call(slide, tmp_path):
    path, _ = slide
    seen = []
    warp_to_ome_tiff(path, MATRIX, (280, 400), tmp_path / "a.ome.tif", tile=64, write_tile=32, compression="zlib",
                     on_progress=seen.append)
    warp_to_ome_tiff(path, MATRIX, (280, 400), tmp_path / "b.ome.tif", tile=64, write_tile=32, compression="zlib")
    assert seen[-1].fraction == 1.0 and all(a.fraction <= b.fraction for a, b in zip(seen, seen[1:]))
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as a, tifffile.TiffFile(tmp_path / "b.ome.tif") as b:
        for level_a, level_b in zip(a.series[0].levels, b.series[0].levels):
            np.testing.assert_array_equal(level_a.asarray(), level_b.asarray())


def test_warp_cli_output_opens_as_multiscale_layer(slide, tmp_path):
    path, data = slide
    transform = tmp_path / "t.json"
    write_json(transform, {"matrix": MATRIX, "moving_shape": list(data.shape[:2]), "fixed_shape": [280, 400]})
    out = tmp_path / "registered.ome.tif"
    assert main(["warp", str(path), str(transform), "--out", str(out)]) == 0
    (layer_data, meta, kind), = get_pyramid_reader(str(out))(str(out))
    assert kind == "image" and meta["multiscale"] and meta["rgb"]
    assert [d.shape for d in layer_data][:2] == [(280, 400, 3), (140, 200, 3)]
    assert np.asarray(layer_data[-1]).dtype == np.uint8
    fixed = tmp_path / "fixed.png"
    write_image(fixed, np.zeros((100, 100, 3), np.uint8))
    assert main(["warp", str(path), str(transform), "--like", str(fixed), "--out", str(out)]) == 2  # wrong geometry


def test_widget_exports_warped_slide(slide, tmp_path, make_napari_viewer, qtbot, monkeypatch):
    pytest.importorskip("napari")
    from napari.layers._source import layer_source

    from napari_histoaffine._qt import register_widget as rw
    from napari_histoaffine.plugin.session import PickedLayers, RegistrationInputs
    from napari_histoaffine.registration.options import RegistrationOptions
    from napari_histoaffine.registration.results import RegistrationResult

    path, data = slide
    viewer = make_napari_viewer()
    widget = rw.RegisterWidget(viewer)
    fixed = viewer.add_image(np.zeros((280, 400, 3), np.uint8), rgb=True, name="fixed")
    with layer_source(path=str(path)):
        moving = viewer.add_image(data, rgb=True, name="moving")
    inputs = RegistrationInputs(data, fixed.data, RegistrationOptions(), data.shape[:2], (280, 400))
    result = RegistrationResult(MATRIX, data.shape[:2], (280, 400), [], {}, 0.0, 0.0, 0.0, False, [])
    widget.session.show(PickedLayers(fixed, moving), inputs, result)
    worker = widget.files.export_slide(str(tmp_path / "w.ome.tif"))
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        pass
    assert [lv.shape for lv in open_pyramid(tmp_path / "w.ome.tif")][0] == (280, 400, 3)
    widget.session.show(PickedLayers(fixed, viewer.add_image(data, rgb=True, name="in memory")), inputs, result)
    with pytest.raises(InputError, match="no file on disk"):
        widget.files.export_slide(str(tmp_path / "x.ome.tif"))


def test_jpeg_tiles_read_lazily(tmp_path):
    data = _image(256, 320)
    path = tmp_path / "j.tif"
    tifffile.imwrite(path, data, tile=(64, 64), photometric="rgb", compression="jpeg")
    expected = tifffile.imread(path)
    level = open_pyramid(path)[0]
    np.testing.assert_array_equal(open_level(path, 0, chunk=64)[70:200, 10:250].compute(), expected[70:200, 10:250])
    np.testing.assert_array_equal(level.compute(), expected)


def _generic_tiff(path, data):
    """A tiled pyramid with its reduced levels as successive pages: the layout OpenSlide's generic-tiff reader takes."""
    with tifffile.TiffWriter(path) as tif:
        for k, level in enumerate((data, data[::2, ::2], data[::4, ::4])):
            tif.write(np.ascontiguousarray(level), tile=(64, 64), photometric="rgb", compression="zlib",
                      **({"subfiletype": 1} if k else {}))


def test_openslide_reads_a_pyramidal_tiff_to_the_pixels_tifffile_reads(tmp_path):
    pytest.importorskip("openslide", reason="OpenSlide is the optional [slides] extra")
    data = _image(300, 420)
    path = tmp_path / "generic.tif"
    _generic_tiff(path, data)
    ours, theirs = level_sources(path), openslide_sources(path)
    assert [s.shape for s in theirs] == [s.shape for s in ours] == [(300, 420, 3), (150, 210, 3), (75, 105, 3)]
    assert theirs[1].full_shape == (300, 420)
    for level in (0, 1):
        region = (17, 190, 33, 301)  # rows, cols: not aligned to tiles
        np.testing.assert_array_equal(theirs[level].read(*region), ours[level].read(*region))
    np.testing.assert_array_equal(openslide_pyramid(path)[1][10:90, 20:150].compute(), data[::2, ::2][10:90, 20:150])


def test_openslide_formats_without_the_extra_name_it(tmp_path, monkeypatch):
    slide = tmp_path / "scan.mrxs"
    slide.write_bytes(b"not really a MIRAX slide")
    monkeypatch.setitem(sys.modules, "openslide", None)  # as if the [slides] extra were not installed
    for read in (read_image, level_sources, open_pyramid):
        with pytest.raises(InputError, match=r"\.mrxs slides needs OpenSlide: pip install 'napari-histoaffine\[slides\]'"):
            read(slide)


def test_a_broken_openslide_file_is_refused_in_one_line(tmp_path):
    pytest.importorskip("openslide", reason="OpenSlide is the optional [slides] extra")
    slide = tmp_path / "scan.mrxs"
    slide.write_bytes(b"not really a MIRAX slide")
    with pytest.raises(InputError, match="Cannot read slide .*scan.mrxs"):
        read_image(slide, max_long_side=288)


def test_openslide_formats_are_read_through_openslide_by_suffix(tmp_path):
    pytest.importorskip("openslide", reason="OpenSlide is the optional [slides] extra")
    data = _image(300, 420)
    _generic_tiff(tmp_path / "generic.tif", data)
    # OpenSlide recognises the content; the suffix sends the file our OpenSlide way (as for .mrxs, .scn, ...)
    (tmp_path / "generic.svslide").write_bytes((tmp_path / "generic.tif").read_bytes())
    via_tifffile, via_openslide = (read_image(tmp_path / f"generic.{s}", max_long_side=200) for s in ("tif", "svslide"))
    assert via_openslide.level == via_tifffile.level == 1 and via_openslide.full_shape == (300, 420)
    np.testing.assert_array_equal(via_openslide.data, via_tifffile.data)
    assert get_pyramid_reader(str(tmp_path / "generic.svslide")) is not None
