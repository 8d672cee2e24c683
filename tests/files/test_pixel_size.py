"""Pixel sizes read from slide files, carried into the transform JSON, the CLI line and the warped OME-TIFF."""
import json

import numpy as np
import pytest
import tifffile

from napari_histoaffine import transforms
from napari_histoaffine.cli import main
from napari_histoaffine.files.pixel_size import ome_physical_size, pixel_size_um
from napari_histoaffine.files.tables import write_landmarks


def write_ome(path, image, um):
    tifffile.imwrite(path, image, ome=True, photometric="rgb",
                     metadata={"axes": "YXS", **ome_physical_size((um, um))})


def test_pixel_sizes_from_ome_svs_and_resolution_tags(tmp_path):
    image = np.zeros((32, 48, 3), np.uint8)
    write_ome(tmp_path / "a.ome.tif", image, 0.25)
    assert pixel_size_um(tmp_path / "a.ome.tif") == pytest.approx((0.25, 0.25))
    tifffile.imwrite(tmp_path / "nm.ome.tif", image, ome=True, photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 500, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 250, "PhysicalSizeYUnit": "nm"})
    assert pixel_size_um(tmp_path / "nm.ome.tif") == pytest.approx((0.5, 0.25))
    tifffile.imwrite(tmp_path / "svs.tif", image, photometric="rgb",
                     description="Aperio Image Library v12.0.5\r\n48x32 [0,0 48x32] JPEG/RGB Q=70|AppMag = 40|MPP = 0.2520")
    with tifffile.TiffFile(tmp_path / "svs.tif") as tif:
        svs = tif.is_svs
    if svs:  # tifffile recognises SVS by its description
        assert pixel_size_um(tmp_path / "svs.tif") == pytest.approx((0.252, 0.252))
    tifffile.imwrite(tmp_path / "cm.tif", image, photometric="rgb", resolution=(40000, 20000), resolutionunit="CENTIMETER")
    assert pixel_size_um(tmp_path / "cm.tif") == pytest.approx((0.25, 0.5))
    tifffile.imwrite(tmp_path / "plain.tif", image, photometric="rgb")
    assert pixel_size_um(tmp_path / "plain.tif") is None
    assert pixel_size_um(tmp_path / "missing.tif") is None


def test_an_ome_pair_at_025_and_05_um_registers_and_its_warp_carries_05_um(tmp_path, ihc_at, capsys):
    fixed, moving = ihc_at(0.5), ihc_at(1.0)  # one section; the moving scan has 2x finer pixels
    write_ome(tmp_path / "fixed.ome.tif", fixed, 0.5)
    write_ome(tmp_path / "moving.ome.tif", moving, 0.25)
    grid = np.stack(np.meshgrid(np.linspace(60, 190, 4), np.linspace(60, 190, 4)), -1).reshape(-1, 2)
    truth = transforms.resample_matrix(moving.shape, fixed.shape)  # moving pixels → fixed pixels
    write_landmarks(tmp_path / "fixed.csv", grid)
    write_landmarks(tmp_path / "moving.csv", transforms.apply_to_points(transforms.invert(truth), grid))
    assert main(["register", str(tmp_path / "moving.ome.tif"), str(tmp_path / "fixed.ome.tif"), "--out",
                 str(tmp_path / "out"), "--moving-landmarks", str(tmp_path / "moving.csv"),
                 "--fixed-landmarks", str(tmp_path / "fixed.csv")]) == 0
    line = capsys.readouterr().out
    saved = json.loads((tmp_path / "out" / "transform.json").read_text())
    assert saved["moving_pixel_size_um"] == pytest.approx([0.25, 0.25])
    assert saved["fixed_pixel_size_um"] == pytest.approx([0.5, 0.5])
    scale = np.sqrt(abs(np.linalg.det(np.array(saved["matrix"])[:2, :2])))
    assert scale == pytest.approx(0.5, rel=0.02)
    assert " um max " in line  # the TRE in µm beside the rTRE
    tre_um = float(line.split("TRE median ")[-1].split(" um")[0])
    assert tre_um < 2.0  # under 4 fixed pixels
    out = tmp_path / "warped.ome.tif"
    assert main(["warp", str(tmp_path / "moving.ome.tif"), str(tmp_path / "out" / "transform.json"), "--out", str(out)]) == 0
    assert "of 0.5 um" in capsys.readouterr().out
    assert pixel_size_um(out) == pytest.approx((0.5, 0.5))
    assert tifffile.imread(out).shape[:2] == fixed.shape[:2]
