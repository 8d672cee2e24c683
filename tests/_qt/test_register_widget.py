"""The Register widget, opened through the npe2 manifest, on the sample pair (run under xvfb-run)."""
import dataclasses
import threading

import numpy as np
import pytest
import tifffile
from app_model.types import KeyBinding
from qtpy.QtCore import Qt
from skimage import transform as skimage_transform

from napari_histoaffine import transforms
from napari_histoaffine._qt import export_controls
from napari_histoaffine._qt import register_widget as rw
from napari_histoaffine._qt.common import WEIGHTS_FILE
from napari_histoaffine._qt.layer_pickers import NONE
from napari_histoaffine.files.images import open_pyramid, write_image
from napari_histoaffine.files.tables import write_landmarks
from napari_histoaffine.files.transform_files import read_affine_parameters
from napari_histoaffine.plugin import session as session_module
from napari_histoaffine.plugin.layer_transforms import data_to_world_matrix, layer_matrices, moving_layer_affine
from napari_histoaffine.sample import make_pair

# The sample's landmarks are exact and its images 512 px, registered at full resolution: the engine
# reaches a median rTRE of ~0.0014 (≈1 px of the 724 px diagonal). 0.005 (≈3.6 px) leaves room for
# run-to-run jitter yet is 4× stricter than ANHIR's success limit (0.02).
RTRE_LIMIT = 0.005
TIMEOUT_MS = 180_000


@pytest.fixture
def setup(make_napari_viewer, monkeypatch):
    errors = []
    monkeypatch.setattr(rw, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-histoaffine", "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    return viewer, widget, errors


def register(qtbot, widget):
    widget.register_button.click()
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)


def test_register_sample(qtbot, setup, tmp_path):
    viewer, widget, errors = setup
    fixed, moving = viewer.layers["fixed (IHC)"], viewer.layers["moving (restained)"]
    fixed_pts, moving_pts = viewer.layers["fixed landmarks"], viewer.layers["moving landmarks"]
    assert widget.pickers.moving_combo.currentText() == moving.name and widget.pickers.moving_points_combo.currentText() == moving_pts.name
    data_before = (moving.data.copy(), moving_pts.data.copy())
    register(qtbot, widget)
    assert not errors
    expected = moving_layer_affine(widget.result.matrix, data_to_world_matrix(fixed), layer_matrices(moving)[0])
    np.testing.assert_allclose(moving.affine.affine_matrix, expected)
    pair = make_pair()
    within_one_percent = 0.01 * np.hypot(*fixed.data.shape[:2])  # the engine's accuracy target on this pair
    for (x, y), (fx, fy) in zip(pair.moving_landmarks[:3], pair.fixed_landmarks[:3]):
        np.testing.assert_allclose(moving.data_to_world((y, x)), fixed.data_to_world((fy, fx)), atol=within_one_percent)
    np.testing.assert_array_equal(moving.data, data_before[0])
    np.testing.assert_array_equal(moving_pts.data, data_before[1])
    table = widget.table
    assert len(table.rtre) == 36 and np.median(table.rtre) < RTRE_LIMIT
    assert "median" in table.summary.text() and widget.table.table.rowCount() == 36
    assert "confident" in widget.summary.text() and widget.candidates.count() >= 2
    assert not widget.result.verdict.flagged and not widget.alternative_button.isEnabled()

    # move one fixed landmark: only its row changes, by the displacement
    registered = viewer.layers["moving landmarks (registered)"].data
    shifted = fixed_pts.data.copy()
    shifted[5] += (6.0, -8.0)
    old = table.tre.copy()
    fixed_pts.data = shifted
    np.testing.assert_allclose(table.tre[5], np.linalg.norm(registered[5] - shifted[5]))
    assert abs(table.tre[5] - old[5]) > 5
    np.testing.assert_allclose(np.delete(table.tre, 5), np.delete(old, 5))
    assert table.table.item(5, 1).text() == f"{table.tre[5]:.2f}"
    fixed_pts.data = shifted[:-1]  # deleting a point: lengths differ, said in the table
    assert len(table.tre) == 0 and "differ in length" in table.summary.text()
    fixed_pts.data = shifted

    # exports
    widget.session.export_transform(tmp_path / "t.json")
    widget.session.export_transform(tmp_path / "t.txt")
    np.testing.assert_allclose(read_affine_parameters((tmp_path / "t.txt").read_text()), widget.result.matrix)
    widget.session.export_landmarks(tmp_path / "lm.csv")
    assert (tmp_path / "t.json").read_text().count("matrix") and len((tmp_path / "lm.csv").read_text().splitlines()) == 37

    # refit from landmarks: the exact sample landmarks (one moved) give a near-perfect affine
    widget.refit_from_landmarks()
    assert np.median(table.rtre) < 0.002

    # another pose candidate, then back to the best
    widget.try_candidate(1)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    tried = widget.result.candidates[1]
    assert widget.result.flipped == tried.flipped
    assert transforms.angle_difference(widget.result.rotation_deg, tried.angle_deg) < 10

    # tissue masks over their images: the far corner of the fixed mask lands on the fixed image's corner
    widget.toggle_masks()
    fixed_mask, moving_mask = widget.session.mask_layers
    assert fixed_mask.data.max() == 1 and moving_mask.data.max() == 2 and fixed_mask.data.mean() > 0.5
    corner = np.array(fixed_mask.data.shape) - 0.5
    np.testing.assert_allclose(fixed_mask.data_to_world(corner), fixed.data_to_world(np.array(fixed.data.shape[:2]) - 0.5),
                               atol=1e-6)

    widget.reset()
    assert not widget.session.mask_layers and fixed_mask not in viewer.layers
    np.testing.assert_array_equal(moving.affine.affine_matrix, np.eye(3))
    assert "moving landmarks (registered)" not in viewer.layers and moving.opacity == 1.0
    assert widget.summary.text() == "" and not widget.alternative_button.isEnabled()
    assert not errors


def test_flagged_result_offers_alternative(qtbot, setup):
    """A pose forced into the other mirror state is flagged with the engine's reason; one click goes back."""
    viewer, widget, errors = setup
    button = widget.alternative_button
    register(qtbot, widget)
    automatic = widget.result
    wrong = next(i for i, p in enumerate(automatic.candidates) if p.flipped != automatic.flipped)
    widget.try_candidate(wrong)
    assert widget.worker is not None and not button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    verdict = widget.result.verdict
    assert widget.result.flipped != automatic.flipped and verdict.flagged and verdict.alternative is not None
    text = widget.summary.text()
    assert "check this result" in text and verdict.reason in text and f"({100 * verdict.confidence:.0f} %)" in text
    assert button.isEnabled() and not button.isHidden() and button.text() == "Try the other mirror state"

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert widget.worker is not None and not button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.result.flipped == automatic.flipped and not widget.result.verdict.flagged
    assert "confident" in widget.summary.text() and "check this result" not in widget.summary.text()
    assert not button.isEnabled() and button.isHidden()
    assert not errors


def test_cancel_leaves_layers(qtbot, setup):
    viewer, widget, errors = setup
    moving = viewer.layers["moving (restained)"]
    moving.scale, moving.translate = (2.0, 2.0), (5.0, -3.0)
    before = np.array(moving.affine.affine_matrix)
    names = [ly.name for ly in viewer.layers]
    widget.register_button.click()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    np.testing.assert_array_equal(moving.affine.affine_matrix, before)
    assert [ly.name for ly in viewer.layers] == names and widget.result is None
    assert "Cancel" in widget.status.text() and not errors


def test_two_images_opened_one_after_the_other_are_fixed_and_moving(qtbot, make_napari_viewer):
    """B2: dock the widget in an empty viewer, then open two images: the newest is the moving one."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    pair = make_pair()
    viewer.add_image(pair.fixed, name="first")
    assert widget.pickers.fixed_combo.currentText() == "first"
    viewer.add_image(pair.moving, name="second")
    assert (widget.pickers.fixed_combo.currentText(), widget.pickers.moving_combo.currentText()) == ("first", "second")
    fixed, moving, _, _ = widget.pickers.selected()
    assert (fixed.name, moving.name) == ("first", "second")


def test_both_docks_fit_a_small_screen(qtbot, setup):
    """B4: with Register and Fine-tune docked, the window fits 1366 × 768; the docks scroll instead."""
    viewer, widget, errors = setup
    _, tuning = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Fine-tune network")
    window = viewer.window._qt_window
    window.resize(1366, 768)
    qtbot.wait(50)
    assert window.height() <= 768
    for dock in (widget, tuning):
        assert dock.minimumSizeHint().height() < 300


def test_keys_register_toggle_the_overlay_and_the_checkerboard_and_a_row_click_centres(qtbot, setup):
    viewer, widget, errors = setup

    def press(key):
        viewer.keymap[KeyBinding.from_str(key)](viewer)

    press("Alt-R")
    assert widget.worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    moving = viewer.layers["moving (restained)"]
    opacity = moving.opacity
    press("Alt-O")
    assert moving.opacity != opacity
    press("Alt-C")
    qtbot.waitUntil(lambda: widget.inspect.layer is not None)  # computed in a worker thread
    assert widget.inspect.layer.name == "inspection: checkerboard"
    press("Alt-C")
    assert widget.inspect.layer is None
    widget.table.table.cellClicked.emit(5, 0)
    fixed_pts = viewer.layers["fixed landmarks"]
    assert fixed_pts.selected_data == {5}
    np.testing.assert_allclose(viewer.camera.center[-2:], fixed_pts.data_to_world(fixed_pts.data[5]))
    assert "Confidence" in widget.summary.toolTip() and not errors


def test_moving_landmarks_follow_their_image_and_reset_puts_them_back(qtbot, setup):
    viewer, widget, errors = setup
    moving_pts, fixed_pts = viewer.layers["moving landmarks"], viewer.layers["fixed landmarks"]
    before = np.array(moving_pts.affine.affine_matrix)
    register(qtbot, widget)
    on_screen = np.array([moving_pts.data_to_world(p) for p in moving_pts.data])
    targets = np.array([fixed_pts.data_to_world(p) for p in fixed_pts.data])
    assert np.median(np.hypot(*(on_screen - targets).T)) < RTRE_LIMIT * np.hypot(*viewer.layers["fixed (IHC)"].data.shape[:2])
    assert len(widget.table.rtre) == 36 and np.median(widget.table.rtre) < RTRE_LIMIT  # the table is unchanged by it
    widget.reset()
    np.testing.assert_array_equal(moving_pts.affine.affine_matrix, before)
    assert not errors


def test_corrections_by_hand_change_the_affine_exactly_and_refine_returns(qtbot, setup):
    """Flip, turn and nudge compose exactly the expected matrix with the registration; after a 5° turn by
    hand, Refine from here returns to the registered pose (median rTRE change < 0.002)."""
    viewer, widget, errors = setup
    register(qtbot, widget)
    moving = viewer.layers["moving (restained)"]
    registered = widget.result.matrix
    rows, cols = widget.result.moving_shape
    centre = transforms.apply_to_points(registered, [[(cols - 1) / 2, (rows - 1) / 2]])[0]

    def about_centre(change):
        return transforms.compose(registered, transforms.translation(*-centre), change, transforms.translation(*centre))

    widget.correct.change(transforms.mirror_x())
    np.testing.assert_allclose(widget.result.matrix, about_centre(transforms.mirror_x()), atol=1e-9)
    assert "moved by hand" in widget.summary.text()
    fixed = viewer.layers["fixed (IHC)"]
    np.testing.assert_allclose(moving.affine.affine_matrix, moving_layer_affine(
        widget.result.matrix, data_to_world_matrix(fixed), layer_matrices(moving)[0]), atol=1e-9)
    widget.correct.change(transforms.mirror_x())  # flipped back
    np.testing.assert_allclose(widget.result.matrix, registered, atol=1e-9)
    step = 0.005 * np.hypot(*widget.result.fixed_shape)
    def press(key):  # as napari does for the active layer
        moving.keymap[KeyBinding.from_str(key)](moving)

    press("Right")
    np.testing.assert_allclose(widget.result.matrix, about_centre(transforms.translation(step, 0.0)), atol=1e-9)
    press("Left")
    for _ in range(5):
        press("Shift-Left")
    np.testing.assert_allclose(widget.result.matrix, about_centre(transforms.rotation(5.0)), atol=1e-9)
    widget.refine_from_here()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    pair = make_pair()
    before = transforms.apply_to_points(registered, pair.moving_landmarks)
    after = transforms.apply_to_points(widget.result.matrix, pair.moving_landmarks)
    assert np.median(np.hypot(*(after - before).T)) / np.hypot(*widget.result.fixed_shape) < 0.002
    assert "your pose" in widget.status.text() and not errors
    widget.reset()
    assert KeyBinding.from_str("Right") not in moving.keymap and not widget.correct.isEnabled()


@pytest.mark.parametrize("suffix", [".json", ".txt", ".tfm"], ids=["json", "elastix", "itk"])
def test_an_exported_transform_applied_again_reproduces_the_registration(qtbot, setup, tmp_path, suffix):
    """Export the transform, Reset, apply the file: the moving layer is placed exactly as registered."""
    viewer, widget, errors = setup
    register(qtbot, widget)
    moving = viewer.layers["moving (restained)"]
    registered_affine = np.array(moving.affine.affine_matrix)
    path = tmp_path / f"transform{suffix}"
    widget.session.export_transform(path)
    widget.reset()
    assert not np.allclose(moving.affine.affine_matrix, registered_affine)
    widget.apply_saved_transform(path)
    np.testing.assert_allclose(moving.affine.affine_matrix, registered_affine, atol=1e-6)
    assert "no verdict" in widget.summary.text() and not widget.masks_button.isEnabled() and not errors
    widget.refine_from_here()  # the imported pose gets a verdict
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.result.verdict is not None and "confident" in widget.summary.text()


def test_inspection_views_come_and_go_with_the_registration(qtbot, setup):
    """Each view is one extra layer over the pair (the user's layers untouched); Reset removes it."""
    viewer, widget, errors = setup
    names = [layer.name for layer in viewer.layers]
    assert not widget.inspect.isEnabled()
    register(qtbot, widget)
    for view in ("checkerboard", "swipe", "difference", "false colour"):
        widget.inspect.view_combo.setCurrentText(view)
        qtbot.waitUntil(lambda: widget.inspect.layer is not None and widget.inspect.layer.name.endswith(view))
        shown = [layer for layer in viewer.layers if layer.name.startswith("inspection")]
        assert [layer.name for layer in shown] == [f"inspection: {view}"]
    widget.inspect.view_combo.setCurrentText("checkerboard")
    qtbot.waitUntil(lambda: widget.inspect.layer.name.endswith("checkerboard"))
    before = np.array(widget.inspect.layer.data)
    widget.inspect.slider.setValue(10)
    qtbot.waitUntil(lambda: not np.array_equal(before, widget.inspect.layer.data))  # smaller tiles
    fixed = viewer.layers["fixed (IHC)"]
    corner = widget.inspect.layer.data_to_world((0, 0))
    np.testing.assert_allclose(corner, fixed.data_to_world((0, 0)), atol=1.0)  # on the fixed layer's grid
    widget.reset()
    assert [layer.name for layer in viewer.layers] == names and not widget.inspect.isEnabled()
    assert not errors


def test_table_rows_keep_the_landmarks_own_numbers_after_a_deletion(qtbot, setup):
    """B5: delete landmark 3 in both layers; the rows then read 0, 1, 2, 4, … like the canvas labels."""
    viewer, widget, errors = setup
    register(qtbot, widget)
    for name in ("fixed landmarks", "moving landmarks"):
        layer = viewer.layers[name]
        layer.selected_data = {3}
        layer.remove_selected()
    ids = [widget.table.table.item(row, 0).text() for row in range(widget.table.table.rowCount())]
    assert ids[:4] == ["0", "1", "2", "4"] and len(ids) == 35
    assert list(viewer.layers["fixed landmarks"].features["index"][:4]) == [0, 1, 2, 4]


def test_buttons_and_status_follow_the_layers_life(qtbot, setup):
    """B6, B7: a removed moving layer drops the result (no pose trials or masks for it), and the
    status line never goes stale: after Reset, after a refused input, after a removal."""
    viewer, widget, errors = setup
    register(qtbot, widget)
    assert widget.status.text().startswith("Registered")
    widget.reset()
    assert widget.status.text().startswith("Reset")
    register(qtbot, widget)
    viewer.layers.remove("moving (restained)")
    assert widget.result is None and "removed" in widget.status.text()
    assert not widget.try_button.isEnabled() and not widget.masks_button.isEnabled()
    layers_before = len(viewer.layers)
    widget.try_candidate(1)
    assert widget.worker is None and len(viewer.layers) == layers_before
    assert "moving landmarks (registered)" not in viewer.layers
    widget.pickers.moving_combo.setCurrentText("fixed (IHC)")
    widget.register_button.click()
    assert errors and widget.status.text().startswith("Not registered")


def test_a_float_image_with_a_nan_block_registers(qtbot, setup):
    """Missing pixels (NaN) are background, not a reason to refuse the layer."""
    viewer, widget, errors = setup
    moving = viewer.layers["moving (restained)"]
    holed = moving.data.astype(np.float32) / 255
    holed[:40, :60] = np.nan
    viewer.add_image(holed, name="with NaN block", rgb=True)
    widget.pickers.moving_combo.setCurrentText("with NaN block")
    widget.pickers.moving_points_combo.setCurrentText("moving landmarks")
    register(qtbot, widget)
    assert not errors and widget.result is not None and not widget.result.verdict.flagged
    assert np.median(widget.table.rtre) < RTRE_LIMIT


def test_bad_inputs_notify(qtbot, setup):
    viewer, widget, errors = setup
    viewer.add_labels(np.zeros((32, 32), int), name="labels")
    viewer.add_image(np.random.default_rng(0).random((3, 32, 32)), name="stack")
    viewer.add_image(np.zeros((32, 32)), name="blank")
    viewer.add_image(np.full((32, 32), np.nan), name="all NaN")
    viewer.add_points(np.zeros((3, 2)), name="three")

    def attempt(fixed, moving, fixed_pts=NONE, moving_pts=NONE):
        for combo, name in ((widget.pickers.fixed_combo, fixed), (widget.pickers.moving_combo, moving),
                            (widget.pickers.fixed_points_combo, fixed_pts), (widget.pickers.moving_points_combo, moving_pts)):
            combo.setCurrentText(name)
        errors.clear()
        widget.register_button.click()
        assert widget.worker is None and len(errors) == 1
        return errors[0]

    assert "both fixed and moving" in attempt("fixed (IHC)", "fixed (IHC)")
    assert "Labels layer, not an image layer" in attempt("fixed (IHC)", "labels")
    assert "not a stack" in attempt("stack", "fixed (IHC)")
    assert "'blank' has a single value everywhere" in attempt("fixed (IHC)", "blank")
    assert "'all NaN' has no finite pixels" in attempt("fixed (IHC)", "all NaN")
    assert "differ in length" in attempt("fixed (IHC)", "moving (restained)", "three", "moving landmarks")
    widget.model_combo.setCurrentText(WEIGHTS_FILE)
    assert "Weights file not found" in attempt("fixed (IHC)", "moving (restained)")


def test_images_without_tissue_are_refused_with_one_notification(qtbot, setup):
    """A noisy blank slide and a 20 x 20 px image: one notification naming the layer, no worker, layers untouched."""
    viewer, widget, errors = setup
    blank = np.clip(240 + np.random.default_rng(0).normal(0, 3, (300, 400, 3)), 0, 255).astype(np.uint8)
    viewer.add_image(blank, name="empty glass", rgb=True)
    viewer.add_image(np.ascontiguousarray(viewer.layers["fixed (IHC)"].data[200:220, 200:220]), name="thumb", rgb=True)
    looks = [(layer.name, np.array(layer.affine.affine_matrix), layer.opacity) for layer in viewer.layers]
    for name, words in (("empty glass", "shows no tissue"), ("thumb", "is 20 x 20 px: too small")):
        widget.pickers.moving_combo.setCurrentText(name)
        errors.clear()
        widget.register_button.click()
        assert widget.worker is None and widget.result is None
        assert errors == [errors[0]] and errors[0].startswith(f"The moving image '{name}' {words}")
        assert widget.status.text().startswith("Not registered")
    assert [(layer.name, layer.opacity) for layer in viewer.layers] == [(name, opacity) for name, _, opacity in looks]
    for layer, (_, affine, _) in zip(viewer.layers, looks):
        np.testing.assert_array_equal(layer.affine.affine_matrix, affine)


def test_a_pyramid_against_a_large_array_meets_at_one_pixel_size(qtbot, make_napari_viewer, monkeypatch):
    """B3: a 4-level moving pyramid against a single-scale fixed array 4× the sample's size: the
    levels are chosen jointly, so the engine gets both sections at one pixel size, and the pose is right."""
    errors, handed = [], []
    monkeypatch.setattr(rw, "show_error", errors.append)
    engine = rw.register_steps
    monkeypatch.setattr(rw, "register_steps", lambda m, f, **o: handed.append((m.shape, f.shape, o)) or engine(m, f, **o))
    viewer = make_napari_viewer()
    pair = make_pair()
    viewer.add_image(np.kron(pair.fixed, np.ones((4, 4, 1), np.uint8)), name="fixed", rgb=True)
    big_moving = np.kron(pair.moving, np.ones((4, 4, 1), np.uint8))
    viewer.add_image([big_moving[::step, ::step] for step in (1, 2, 4, 8)], name="moving", rgb=True, multiscale=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    register(qtbot, widget)
    (moving_shape, fixed_shape, options), = handed
    moving_pixel = options["moving_full_shape"][1] / moving_shape[1]
    fixed_pixel = options["fixed_full_shape"][1] / fixed_shape[1]
    assert not errors and abs(moving_pixel / fixed_pixel - 1) < 0.02
    truth_angle, truth_mirror = transforms.rotation_and_mirror(pair.matrix)
    angle, mirror = transforms.rotation_and_mirror(widget.result.matrix)
    assert mirror == truth_mirror and transforms.angle_difference(angle, truth_angle) < 2.0


def test_multiscale_with_scale_registers(qtbot, make_napari_viewer, monkeypatch):
    """A multiscale grayscale fixed layer with scale/translate and an RGB moving layer of another pixel
    size: the layers' scales say both show the same 512 world units, as two scans at different
    magnifications do, and the registration meets them at one pixel size."""
    errors = []
    monkeypatch.setattr(rw, "show_error", errors.append)
    viewer = make_napari_viewer()
    pair = make_pair()
    gray = pair.fixed.mean(axis=2)
    big = np.kron(gray, np.ones((2, 2)))  # 1024², level 1 is the sample's fixed image
    fixed = viewer.add_image([big, gray], name="fixed", multiscale=True, scale=(0.5, 0.5), translate=(10, 20))
    half = (skimage_transform.rescale(pair.moving, 0.5, channel_axis=-1, anti_aliasing=True) * 255).astype(np.uint8)
    moving = viewer.add_image(half, name="moving", rgb=True, scale=(2.0, 2.0))
    moving_landmarks = transforms.apply_to_points(transforms.resample_matrix(pair.moving.shape, half.shape),
                                                  pair.moving_landmarks)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    register(qtbot, widget)
    assert not errors and widget.result.fixed_shape == (1024, 1024) and widget.result.moving_shape == half.shape[:2]
    full = transforms.apply_to_points(transforms.resample_matrix((512, 512), (1024, 1024)), pair.fixed_landmarks)
    error = [np.linalg.norm(np.subtract(moving.data_to_world((y, x)), fixed.data_to_world((fy, fx))))
             for (x, y), (fx, fy) in zip(moving_landmarks, full)]
    assert np.median(error) < 3.0  # world units = px of the 512² sample: rTRE < 0.005 as in test_register_sample
    (x, y) = moving_landmarks[0]  # exact geometry: the layer shows what the matrix says
    fx, fy = transforms.apply_to_points(widget.result.matrix, [[x, y]])[0]
    np.testing.assert_allclose(moving.data_to_world((y, x)), fixed.data_to_world((fy, fx)), atol=1e-9)


@pytest.fixture
def registered_slide(setup, tmp_path, qtbot, sample_pair, monkeypatch):
    """The sample registered with its moving section read from a tiled TIFF (a file to warp at full resolution)."""
    viewer, widget, errors = setup
    monkeypatch.setattr(export_controls, "show_error", errors.append)
    path = tmp_path / "slides" / "moving slide.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, sample_pair.moving, tile=(64, 64), photometric="rgb")
    moving, = viewer.open(str(path), plugin="napari-histoaffine")
    widget.pickers.moving_combo.setCurrentText(moving.name)
    register(qtbot, widget)
    assert widget.session.picked.moving.name == moving.name and not errors
    return viewer, widget, errors, moving


def test_the_warped_slide_is_written_in_a_worker_with_progress(qtbot, registered_slide, tmp_path):
    viewer, widget, errors, moving = registered_slide
    panel, out = widget.files, tmp_path / "warped.ome.tif"
    assert panel.slide_button.isEnabled() and panel.progress.isHidden()
    progress = []
    worker = panel.export_slide(str(out))
    worker.yielded.connect(lambda item: progress.append(item.fraction))
    assert not panel.progress.isHidden() and panel.cancel_button.isEnabled() and not panel.slide_button.isEnabled()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT_MS)
    assert progress and progress == sorted(progress) and progress[-1] == 1.0 and panel.progress.value() == 100
    assert [level.shape for level in open_pyramid(out)][0] == (512, 512, 3)
    assert panel.status.text() == f"Saved {out}" and panel.slide_button.isEnabled() and not errors


def test_a_cancelled_slide_export_leaves_no_file_and_the_layers_as_they_were(qtbot, registered_slide, tmp_path,
                                                                              monkeypatch):
    """Cancel after the first block: the warp is closed (no file, no temporary), the layers keep their places."""
    viewer, widget, errors, moving = registered_slide
    gate, real = threading.Event(), session_module.warp_steps

    def held_after_the_first_block(*args, **kwargs):  # so that Cancel surely comes while the warp runs
        steps = real(*args, **kwargs)
        yield next(steps)
        gate.wait(TIMEOUT_MS / 1000)
        yield from steps

    monkeypatch.setattr(session_module, "warp_steps", held_after_the_first_block)
    looks = [(layer.name, np.array(layer.affine.affine_matrix), layer.opacity) for layer in viewer.layers]
    panel, out = widget.files, tmp_path / "export" / "warped.ome.tif"
    panel.export_slide(str(out))
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=TIMEOUT_MS)
    panel.cancel_button.click()
    gate.set()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=TIMEOUT_MS)
    assert not out.exists() and not list(out.parent.iterdir())
    assert "cancelled" in panel.status.text() and panel.progress.isHidden() and not errors
    assert [layer.name for layer in viewer.layers] == [name for name, _, _ in looks]
    for layer, (_, affine, opacity) in zip(viewer.layers, looks):
        np.testing.assert_array_equal(layer.affine.affine_matrix, affine)
        assert layer.opacity == opacity
    assert widget.result is not None and panel.slide_button.isEnabled()


def test_open_button_sends_slides_and_landmarks_to_our_readers(setup, tmp_path, monkeypatch):
    viewer, widget, errors = setup
    level = np.random.default_rng(2).integers(0, 255, (256, 320, 3), np.uint8)
    with tifffile.TiffWriter(tmp_path / "slide.ome.tif", ome=True) as tif:  # a pyramid napari alone opens flat
        tif.write(level, subifds=1, tile=(64, 64), photometric="rgb")
        tif.write(level[::2, ::2], subfiletype=1, tile=(64, 64), photometric="rgb")
    write_landmarks(tmp_path / "slide.csv", [[10.0, 20.0], [30.0, 40.0], [50.0, 5.0]])
    write_image(tmp_path / "plain.png", level)
    chosen = [str(tmp_path / name) for name in ("slide.ome.tif", "slide.csv", "plain.png")]
    monkeypatch.setattr(rw.QFileDialog, "getOpenFileNames", lambda *a, **k: (chosen, ""))
    before = len(viewer.layers)
    widget.open_files()
    slide, marks, plain = viewer.layers[before:]
    assert slide.multiscale and [s.shape for s in slide.data] == [(256, 320, 3), (128, 160, 3)]
    assert marks.data.shape == (3, 2) and np.allclose(marks.data[0], [20.0, 10.0])  # (row, col) of (x=10, y=20)
    assert not plain.multiscale and plain.data.shape == (256, 320, 3) and not errors
    (tmp_path / "broken.ome.tif").write_bytes(b"II*\x00 not a TIFF")
    monkeypatch.setattr(rw.QFileDialog, "getOpenFileNames", lambda *a, **k: ([str(tmp_path / "broken.ome.tif")], ""))
    widget.open_files()
    assert len(errors) == 1 and errors[0].startswith("Cannot open broken.ome.tif")


def _shown_angle(widget) -> float:
    return transforms.rotation_and_mirror(widget.result.matrix)[0]


def test_the_rotation_shown_is_the_results_and_the_candidates_mark_it(qtbot, setup):
    """'Rotation X°' is the shown pose's, after a turn by hand and after Refine from here (whose result starts from
    your pose, 5° off); a moved section loses the green verdict; candidates are in score order, ▶ on the shown one."""
    viewer, widget, errors = setup
    register(qtbot, widget)
    rows = [widget.candidates.item(row).text() for row in range(widget.candidates.count())]
    scores = [float(text.split("score ")[1].split()[0]) for text in rows]
    assert scores == sorted(scores, reverse=True) and sum(text.startswith("▶") for text in rows) == 1
    assert "#3c3" in widget.summary.text() and f"Rotation {_shown_angle(widget):.1f}°" in widget.summary.text()
    widget.correct.change(transforms.rotation(5.0))
    text = widget.summary.text()
    assert f"Rotation {_shown_angle(widget):.1f}°" in text and "#3c3" not in text and "before your change" in text
    widget.refine_from_here()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    text = widget.summary.text()
    assert f"Rotation {_shown_angle(widget):.1f}°" in text and "before your change" not in text
    assert f"Rotation {widget.result.rotation_deg:.1f}°" in text  # the engine's own angle is the result's too
    marked = [widget.candidates.item(row) for row in range(widget.candidates.count())
              if widget.candidates.item(row).text().startswith("▶")]
    pose = widget.result.candidates[marked[0].data(Qt.ItemDataRole.UserRole)]
    assert len(marked) == 1 and transforms.angle_difference(pose.angle_deg, _shown_angle(widget)) < 10
    assert widget.candidates.item(widget.candidates.count() - 1).text().endswith("score –")  # your pose: no score
    assert not errors


def test_the_alternative_button_offers_the_pose_the_reason_names(qtbot, setup):
    """'rotation ambiguous: a pose turned by 78° fits better': the button names that turn and goes there."""
    viewer, widget, errors = setup
    register(qtbot, widget)
    automatic = widget.result
    same_mirror = [i for i, p in enumerate(automatic.candidates) if p.flipped == automatic.flipped
                   and transforms.angle_difference(p.angle_deg, automatic.rotation_deg) > 30]
    for index in same_mirror:
        widget.try_candidate(index)
        qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
        if widget.result.verdict.reason.startswith("rotation ambiguous"):
            break
    reason = widget.result.verdict.reason
    assert reason.startswith("rotation ambiguous"), reason
    turn = reason.split("turned by ")[1].split()[0]
    button = widget.alternative_button
    assert button.isEnabled() and button.text() == f"Try the pose turned by {turn}"
    button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not widget.result.verdict.flagged and widget.result.flipped == automatic.flipped
    assert transforms.angle_difference(_shown_angle(widget), transforms.rotation_and_mirror(automatic.matrix)[0]) < 2
    assert not errors


def test_no_control_is_a_silent_no_op(qtbot, setup):
    """Flip/Turn and Try are off during a run; Try needs a selection; the masks toggle; the slider says its value."""
    viewer, widget, errors = setup
    register(qtbot, widget)
    assert widget.correct.isEnabled() and not widget.try_button.isEnabled()  # nothing selected
    widget.candidates.setCurrentRow(1)
    assert widget.try_button.isEnabled()
    widget.register_button.click()
    assert widget.worker is not None and not widget.correct.isEnabled() and not widget.try_button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.correct.isEnabled() and widget.progress.value() == 100
    widget.masks_button.click()
    assert len(widget.session.mask_layers) == 2 and widget.masks_button.text() == "Hide tissue masks"
    widget.masks_button.click()
    assert not widget.session.mask_layers and not [ly for ly in viewer.layers if ly.name.endswith("tissue mask")]
    assert widget.masks_button.text() == "Show tissue masks"
    inspect = widget.inspect
    inspect.view_combo.setCurrentText("checkerboard")
    inspect.slider.setValue(20)
    assert inspect.value_label.text() == f"tiles {inspect._tile()} px"
    inspect.view_combo.setCurrentText("swipe")
    assert inspect.value_label.text() == "curtain 20 %" and not errors


def test_no_stale_texts_after_a_saved_transform_cancel_or_reset(qtbot, setup, tmp_path):
    viewer, widget, errors = setup
    register(qtbot, widget)
    widget.session.export_transform(tmp_path / "t.json")
    widget.reset()
    assert widget.progress.value() == 0
    widget.apply_saved_transform(tmp_path / "t.json")
    assert "nan" not in widget.summary.text() and "not measured" in widget.summary.text()
    widget.register_button.click()
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.progress.value() == 0 or widget.status.text().startswith("Registered")  # a run may finish first
    assert not errors


def test_a_transform_exported_without_an_extension_gets_the_chosen_filters(qtbot, setup, tmp_path, monkeypatch):
    viewer, widget, errors = setup
    register(qtbot, widget)
    monkeypatch.setattr(export_controls, "show_error", errors.append)
    monkeypatch.setattr(export_controls.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "transform"), "ITK transform (*.tfm)"))
    widget.files.transform_button.click()
    assert not (tmp_path / "transform").exists() and not errors
    assert (tmp_path / "transform.tfm").read_text().startswith("#Insight Transform File")


def test_a_result_by_the_largest_pieces_is_rerun_by_them(qtbot, setup, monkeypatch):
    """Trying another of its candidates (or refining from the shown pose) keeps to the largest pieces, whose poses
    the candidate list holds; a result of all the tissue keeps to all of it."""
    viewer, widget, errors = setup
    engine, handed = rw.register_steps, []
    monkeypatch.setattr(rw, "register_steps", lambda m, f, **o: handed.append(o) or engine(m, f, **o))
    register(qtbot, widget)
    assert "largest_pieces" not in handed[-1] and not widget.result.largest_pieces  # automatic on the first run
    widget.try_candidate(1)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert handed[-1]["largest_pieces"] is False
    widget.session.result = dataclasses.replace(widget.result, largest_pieces=True)
    widget.refine_from_here()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert handed[-1]["largest_pieces"] is True and not errors
