"""Closing napari, or a dock, while the dock's worker runs: the work stops, nothing is applied, Python exits cleanly
(run under xvfb-run)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_histoaffine._qt import register_widget as rw

# A napari viewer in a fresh Python: start the Fine-tune dock's training (a small new network on the sample pair),
# close the viewer while the worker is inside the training loop, let napari.run return and Python exit.
SCRIPT = textwrap.dedent("""
    import sys, time
    import napari, torch
    from qtpy.QtCore import QTimer
    from napari_histoaffine._qt.training_settings import NEW

    torch.set_num_threads(1)
    viewer = napari.Viewer()
    viewer.open_sample("napari-histoaffine", "histology_pair")
    t0, steps = time.monotonic(), []
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Fine-tune network")
    widget.add_layer_pair()
    s = widget.settings
    s.start_from.value, s.width.value, s.length.value, s.steps_per_epoch.value = NEW, 8, 100_000, 2
    s.working_size.value = 128
    widget.updated.connect(lambda u: getattr(u, "loss", None) is not None and steps.append(u.step))
    widget.start()

    def close_while_running():
        if time.monotonic() - t0 > 120:
            sys.exit("the worker never got going")
        if len(steps) < 2:
            return QTimer.singleShot(5, close_while_running)
        print(f"closing, worker running: {widget.worker is not None and widget.worker.is_running}", flush=True)
        viewer.close()

    QTimer.singleShot(20, close_while_running)
    napari.run()
    print("napari.run returned", flush=True)
""")


@pytest.mark.gui
def test_closing_the_viewer_while_fine_tune_trains_stops_it_and_exits_cleanly():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]  # was -11 (segfault)
    assert "closing, worker running: True" in run.stdout and "napari.run returned" in run.stdout
    assert "Traceback" not in run.stderr and "Error" not in run.stderr, run.stderr[-3000:]


def test_closing_the_register_dock_during_a_run_leaves_the_moving_layer_unchanged(qtbot, make_napari_viewer,
                                                                                  monkeypatch):
    errors = []
    monkeypatch.setattr(rw, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-histoaffine", "histology_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections")
    moving = viewer.layers[widget.pickers.moving_combo.currentText()]
    affine, opacity, layers = moving.affine.affine_matrix.copy(), moving.opacity, len(viewer.layers)
    widget.start_registration()
    worker = widget.worker
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        viewer.window.remove_dock_widget(widget)  # the dock's close button
    qtbot.wait(200)  # whatever the worker emitted is delivered
    np.testing.assert_array_equal(moving.affine.affine_matrix, affine)  # was the registration's
    assert moving.opacity == opacity and len(viewer.layers) == layers and widget.result is None and not errors
    assert worker.abort_requested  # stopped at its next stage, not run to the end
