"""The Register dock's landmark table gives the TRE in µm for slides that state their pixel size, and none otherwise
(run under xvfb-run)."""
import numpy as np
import pytest
import tifffile

from napari_histoaffine._qt import register_widget as rw
from napari_histoaffine.files.pixel_size import ome_physical_size
from napari_histoaffine.files.tables import write_landmarks
from napari_histoaffine.plugin.readers import PIXEL_SIZE, open_files
from napari_histoaffine.sample import make_pair

TIMEOUT_MS = 180_000


@pytest.fixture(scope="module")
def pair():
    return make_pair()


def _open_pair(viewer, pair, tmp_path, um):
    """The sample pair as OME-TIFF slides stating ``um`` µm pixels (None: no pixel size) and its landmark files,
    opened as a user would (this plugin's readers)."""
    for name, image, landmarks in (("fixed", pair.fixed, pair.fixed_landmarks),
                                   ("moving", pair.moving, pair.moving_landmarks)):
        image = np.asarray(image * 255 if image.dtype.kind == "f" else image).astype(np.uint8)
        size = ome_physical_size(None if um is None else (um, um))
        tifffile.imwrite(tmp_path / f"{name}.ome.tif", image, ome=True, photometric="rgb",
                         metadata={"axes": "YXS", **size})
        write_landmarks(tmp_path / f"{name}_lm.csv", landmarks)
    names = ("fixed.ome.tif", "moving.ome.tif", "fixed_lm.csv", "moving_lm.csv")
    return open_files(viewer, [tmp_path / name for name in names])


def _register(qtbot, viewer, monkeypatch):
    errors = []
    monkeypatch.setattr(rw, "show_error", errors.append)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    for combo, name in ((widget.pickers.fixed_combo, "fixed"), (widget.pickers.moving_combo, "moving"),
                        (widget.pickers.fixed_points_combo, "fixed_lm"),
                        (widget.pickers.moving_points_combo, "moving_lm")):
        combo.setCurrentText(name)
    widget.register_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not errors and widget.result is not None
    return widget


def test_calibrated_slides_show_the_tre_in_um(qtbot, make_napari_viewer, monkeypatch, tmp_path, pair):
    viewer = make_napari_viewer()
    fixed, moving, fixed_pts, _ = _open_pair(viewer, pair, tmp_path, 0.5)
    for layer in (fixed, moving):
        assert layer.metadata[PIXEL_SIZE] == pytest.approx((0.5, 0.5))
    assert tuple(fixed.scale) == (1.0, 1.0)  # the layers stay in pixels
    widget = _register(qtbot, viewer, monkeypatch)
    table = widget.table
    assert len(table.tre) == 36 and not table.table.isColumnHidden(2)
    assert table.table.horizontalHeaderItem(2).text() == "TRE (µm)"
    np.testing.assert_allclose(table.tre_um, 0.5 * table.tre, rtol=1e-12)
    for row in range(table.table.rowCount()):
        assert table.table.item(row, 2).text() == f"{0.5 * table.tre[row]:.2f}"
    assert f"TRE median {np.median(0.5 * table.tre):.2f} µm" in table.summary.text()

    shifted = fixed_pts.data.copy()  # a moved landmark: its µm follow its px
    shifted[5] += (6.0, -8.0)
    fixed_pts.data = shifted
    assert table.tre_um[5] == pytest.approx(0.5 * table.tre[5]) and table.tre[5] > 5


def test_slides_without_a_pixel_size_show_no_um(qtbot, make_napari_viewer, monkeypatch, tmp_path, pair):
    viewer = make_napari_viewer()
    fixed, *_ = _open_pair(viewer, pair, tmp_path, None)
    assert fixed.metadata[PIXEL_SIZE] is None
    widget = _register(qtbot, viewer, monkeypatch)
    table = widget.table
    assert len(table.tre) == 36 and table.tre_um is None and table.table.isColumnHidden(2)
    assert all(table.table.item(row, 2).text() == "–" for row in range(table.table.rowCount()))
    assert "µm" not in table.summary.text() and "rTRE median" in table.summary.text()
