"""The inspection view follows the camera: the fixed image's region in view at screen resolution, computed off the
GUI thread and placed exactly over the fixed layer (run under xvfb-run)."""
import os
import threading

import numpy as np
import pytest

from napari_histoaffine import transforms
from napari_histoaffine._qt.inspection_controls import InspectionControls
from napari_histoaffine.plugin import inspection

SIZE = 512


def ramp(shift_rc=(0.0, 0.0)):
    """A smooth image whose value tells the place: bilinear samples of it are exact."""
    rows, cols = np.indices((SIZE, SIZE), dtype=np.float32)
    return ((rows + shift_rc[0]) + 2 * (cols + shift_rc[1])) / (3 * SIZE)


@pytest.fixture
def shown(make_napari_viewer, qtbot, monkeypatch):
    threads = []
    compute = inspection.region_view

    def recorded(*args, **kwargs):
        threads.append(threading.current_thread())
        return compute(*args, **kwargs)

    monkeypatch.setattr(inspection, "region_view", recorded)
    viewer = make_napari_viewer()
    fixed_layer = viewer.add_image(ramp(), name="fixed", scale=(2.0, 2.0), translate=(30.0, -50.0))
    shift = transforms.translation(5.0, -4.0)  # moving → fixed pixels (x, y)
    moving_layer = viewer.add_image(ramp((-4.0, 5.0)), name="moving")  # the fixed image moved back by the shift
    controls = InspectionControls(viewer)
    qtbot.addWidget(controls)
    # arrays as registered at half size: the view samples the layers' own pixels all the same
    fixed_array, moving_array = fixed_layer.data[::2, ::2], moving_layer.data[::2, ::2]
    to_full = transforms.resample_matrix(fixed_array.shape, fixed_layer.data.shape)
    between = transforms.compose(to_full, shift, transforms.invert(to_full))
    controls.show_pair(fixed_array, moving_array, between, fixed_layer, to_full, moving_layer)
    viewer.reset_view()
    return viewer, controls, fixed_layer, threads


def pixel_size(layer):
    """The inspection layer's pixel side in fixed-image pixels (the fixed layer's scale is 2)."""
    return float(layer.scale[-1])


def check_placement(layer, fixed_layer, fixed_rc):
    """The inspection layer shows, where fixed pixel ``fixed_rc`` is drawn, that pixel's own value."""
    world = fixed_layer.data_to_world(fixed_rc)
    index = np.round(np.asarray(layer.world_to_data(world))[-2:]).astype(int)
    shown = layer.data[tuple(index)][0]  # false colour: red is 1 - fixed
    at = np.asarray(fixed_layer.world_to_data(layer.data_to_world(index)))[-2:]  # where that pixel is centred
    expected = 1.0 - ((at[0] + 2 * at[1]) / (3 * SIZE))
    assert shown == pytest.approx(expected, abs=2e-3)
    assert np.all(np.abs(at - np.asarray(fixed_rc)) <= pixel_size(layer) / 2 + 1e-6)


def test_zooming_in_recomputes_the_region_finer_off_the_gui_thread(qtbot, shown, tmp_path):
    viewer, controls, fixed_layer, threads = shown
    controls.view_combo.setCurrentText("false colour")
    qtbot.waitUntil(lambda: controls.layer is not None, timeout=20_000)
    layer = controls.layer
    before_size, before_shape = pixel_size(layer), layer.data.shape
    check_placement(layer, fixed_layer, (200, 300))
    shots = os.environ.get("INSPECTION_SHOTS")
    if shots:
        viewer.screenshot(os.path.join(shots, "before.png"), canvas_only=True)
    # zoom onto ~40 fixed pixels around fixed pixel (200, 300)
    viewer.camera.center = fixed_layer.data_to_world((200, 300))
    viewer.camera.zoom = min(viewer.canvas.size) / (40 * 2.0)
    qtbot.waitUntil(lambda: controls.layer is not None and pixel_size(controls.layer) < before_size / 4, timeout=20_000)
    layer = controls.layer
    assert pixel_size(layer) <= 1.0 / (viewer.camera.zoom * 2.0) + 1e-6  # a screen pixel or finer
    rows, cols = layer.data.shape[:2]
    covered = np.array([layer.data_to_world((0, 0)), layer.data_to_world((rows - 1, cols - 1))])
    centre = np.asarray(viewer.camera.center[-2:])
    assert np.all(covered[0] <= centre) and np.all(covered[1] >= centre)  # the region in view, not the image
    assert max(rows, cols) <= inspection.MAX_SIDE
    check_placement(layer, fixed_layer, (200, 300))
    check_placement(layer, fixed_layer, (190, 310))
    if shots:
        viewer.screenshot(os.path.join(shots, "after.png"), canvas_only=True)
        print("pixel sizes", before_size, before_shape, "->", pixel_size(layer), layer.data.shape)
    assert threads and all(thread is not threading.main_thread() for thread in threads)


def test_a_pan_in_progress_computes_only_the_view_where_the_camera_rests(qtbot, shown):
    viewer, controls, fixed_layer, threads = shown
    controls.view_combo.setCurrentText("difference")
    qtbot.waitUntil(lambda: controls.layer is not None and controls._worker is None, timeout=20_000)
    computed = len(threads)
    viewer.camera.zoom *= 4
    for row in range(100, 400, 30):  # ten moves within the debounce interval
        viewer.camera.center = fixed_layer.data_to_world((row, 250))
    target = fixed_layer.data_to_world((370, 250))
    qtbot.waitUntil(lambda: controls._worker is None and len(threads) > computed and not controls._timer.isActive(),
                    timeout=20_000)
    qtbot.wait(2 * controls.DEBOUNCE_MS)
    assert len(threads) - computed <= 2  # not one per move
    layer = controls.layer
    rows, cols = layer.data.shape[:2]
    low, high = layer.data_to_world((0, 0)), layer.data_to_world((rows - 1, cols - 1))
    assert np.all(low <= target) and np.all(high >= target)
    controls.clear()
    assert controls.layer is None and "inspection" not in " ".join(layer.name for layer in viewer.layers)
