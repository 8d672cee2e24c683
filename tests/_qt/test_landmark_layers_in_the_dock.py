"""The Register dock's landmark table after landmark layers change: a removed layer clears it (with the reason)
and stops the computing; numbers never repeat (issue 27). Run under xvfb-run."""
import numpy as np
import pytest

from napari_histoaffine._qt import register_widget as rw
from napari_histoaffine.plugin import session as session_module

TIMEOUT_MS = 180_000


@pytest.fixture
def registered(make_napari_viewer, monkeypatch, qtbot):
    errors = []
    monkeypatch.setattr(rw, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-histoaffine", "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    widget.register_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.table.table.rowCount() == 36 and not errors
    return viewer, widget, errors


def _ids(widget):
    return [widget.table.table.item(row, 0).text() for row in range(widget.table.table.rowCount())]


@pytest.mark.parametrize("name", ["fixed landmarks", "moving landmarks", "moving landmarks (registered)"])
def test_removing_a_landmark_layer_clears_the_table_and_stops_the_computing(registered, monkeypatch, name):
    viewer, widget, errors = registered
    viewer.layers.remove(name)
    assert widget.table.table.rowCount() == 0 and widget.table.tre.size == 0
    assert f"'{name}' was removed" in widget.table.summary.text()
    calls = []
    monkeypatch.setattr(session_module, "tre", lambda *args: calls.append(args))
    for layer in ("fixed landmarks", "moving landmarks"):
        if layer in viewer.layers:  # editing what is left computes nothing and shows no numbers
            viewer.layers[layer].data = viewer.layers[layer].data + 1.0
    widget.correct.change(np.diag([-1.0, 1.0, 1.0]))  # a flip by hand moves the moving landmarks
    assert not calls and widget.table.table.rowCount() == 0
    assert "moving landmarks (registered)" not in viewer.layers  # not rebuilt
    assert "was removed" in widget.table.summary.text() and not errors
    widget.reset()
    assert widget.result is None


def test_a_landmark_added_after_a_deletion_gets_a_new_number(registered):
    viewer, widget, errors = registered
    for name in ("fixed landmarks", "moving landmarks"):
        layer = viewer.layers[name]
        layer.selected_data = {3}
        layer.remove_selected()
        layer.selected_data = {2}
        layer.add([[100.0, 120.0]])  # napari would copy the selected point's number (or the deleted one's)
    ids = _ids(widget)
    assert ids[:4] == ["0", "1", "2", "4"] and ids[-1] == "36" and len(ids) == len(set(ids)) == 36
    assert list(viewer.layers["moving landmarks"].features["index"][-2:]) == [35, 36]
    layer = viewer.layers["fixed landmarks"]
    layer.selected_data = {35}
    layer.remove_selected()
    layer.add([[90.0, 90.0]])
    assert list(layer.features["index"][-2:]) == [35, 37]  # not 36 again after 36 was deleted
    assert not errors


def test_landmark_files_opened_through_the_dock_are_named_after_the_file_and_paired_with_their_image(
        make_napari_viewer, monkeypatch, tmp_path):
    import tifffile

    from napari_histoaffine.files.images import write_image
    from napari_histoaffine.files.tables import write_landmarks

    errors, infos = [], []
    monkeypatch.setattr(rw, "show_error", errors.append)
    monkeypatch.setattr(rw, "show_info", infos.append)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    level = np.random.default_rng(3).integers(0, 255, (128, 160, 3), np.uint8)
    tifffile.imwrite(tmp_path / "kidney_case_12_HE.ome.tif", level, photometric="rgb")
    write_image(tmp_path / "kidney_case_12_IHC.png", level)
    for name in ("kidney_case_12_HE", "kidney_case_12_IHC", "unrelated"):
        write_landmarks(tmp_path / f"{name}.csv", [[10.0, 20.0], [30.0, 40.0], [50.0, 5.0]])
    # landmarks first: they pair with images opened in the same batch too
    chosen = [str(tmp_path / n) for n in ("kidney_case_12_IHC.csv", "kidney_case_12_HE.csv", "unrelated.csv",
                                          "kidney_case_12_HE.ome.tif", "kidney_case_12_IHC.png")]
    monkeypatch.setattr(rw.QFileDialog, "getOpenFileNames", lambda *a, **k: (chosen, ""))
    widget.open_files()
    names = [layer.name for layer in viewer.layers]
    assert names == ["kidney_case_12_IHC landmarks", "kidney_case_12_HE landmarks", "unrelated landmarks",
                     "kidney_case_12_HE", "kidney_case_12_IHC"]
    assert viewer.layers["kidney_case_12_HE landmarks"].metadata["histoaffine_landmarks_of"] == "kidney_case_12_HE"
    assert "histoaffine_landmarks_of" not in viewer.layers["unrelated landmarks"].metadata
    pickers = widget.pickers
    assert [c.currentText() for c in (pickers.fixed_combo, pickers.moving_combo, pickers.fixed_points_combo,
                                      pickers.moving_points_combo)] == [
        "kidney_case_12_HE", "kidney_case_12_IHC", "kidney_case_12_HE landmarks", "kidney_case_12_IHC landmarks"]
    assert len(infos) == 1 and "unrelated landmarks" in infos[0] and not errors
    fixed, moving, fixed_pts, moving_pts = pickers.selected()
    assert (fixed_pts.name, moving_pts.name) == ("kidney_case_12_HE landmarks", "kidney_case_12_IHC landmarks")
    # swapping the images takes each image's own landmarks along
    pickers.fixed_combo.setCurrentText("kidney_case_12_IHC")
    pickers.moving_combo.setCurrentText("kidney_case_12_HE")
    assert pickers.fixed_points_combo.currentText() == "kidney_case_12_IHC landmarks"
    assert pickers.moving_points_combo.currentText() == "kidney_case_12_HE landmarks"


def test_narrow_pickers_cut_names_in_the_middle_and_show_them_whole_as_tooltips(make_napari_viewer):
    viewer = make_napari_viewer()
    image = np.zeros((64, 64))
    for name in ("renal_biopsy_patient_0042_block_B_HE", "renal_biopsy_patient_0042_block_B_PAS"):
        viewer.add_image(image, name=name)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    combos = (widget.pickers.fixed_combo, widget.pickers.moving_combo)
    for combo in combos:
        assert combo.minimumSizeHint().width() < 160  # the picker shrinks with the dock
        combo.resize(170, combo.height())
        assert combo.toolTip() == combo.currentText()
    shown = [combo.shown_text() for combo in combos]
    assert all("…" in text for text in shown) and shown[0] != shown[1]
    assert shown[0].endswith("_HE") and shown[1].endswith("PAS")
    view = combos[0].view()
    assert view.textElideMode().name == "ElideMiddle"
    assert combos[0].itemData(1, 3) == "renal_biopsy_patient_0042_block_B_PAS"  # 3: Qt's ToolTipRole
