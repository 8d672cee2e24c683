"""The series dock, opened through the npe2 manifest: three sections onto one reference at once."""
import numpy as np

from napari_histoaffine._qt import series_widget as sw
from napari_histoaffine.sample import make_pair

TIMEOUT_MS = 180_000


def test_the_series_widget_aligns_three_sections_and_reset_restores_them(qtbot, make_napari_viewer, monkeypatch):
    errors = []
    monkeypatch.setattr(sw, "show_error", errors.append)
    viewer = make_napari_viewer()
    pair = make_pair()
    viewer.add_image(pair.fixed, name="reference", rgb=True)
    sections = {"as is": pair.moving, "turned": np.ascontiguousarray(np.rot90(pair.moving)),
                "mirrored": np.ascontiguousarray(pair.moving[:, ::-1])}
    layers = {name: viewer.add_image(image, name=name, rgb=True) for name, image in sections.items()}
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register a series")
    widget.reference_combo.setCurrentText("reference")
    assert widget.ticked() == ["as is", "turned", "mirrored"]
    before = {name: np.array(layer.affine.affine_matrix) for name, layer in layers.items()}
    progress = []
    widget.register_button.click()
    widget.worker.yielded.connect(progress.append)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not errors and len(progress) == 3 and widget.verdicts.count() == 3
    assert all("confident" in widget.verdicts.item(i).text() for i in range(3))
    # the same tissue point lands on the reference's landmark in every section
    x, y = pair.moving_landmarks[0]
    h, w = pair.moving.shape[:2]
    in_section = {"as is": (y, x), "turned": (w - 1 - x, y), "mirrored": (y, w - 1 - x)}
    fx, fy = pair.fixed_landmarks[0]
    for name, layer in layers.items():
        np.testing.assert_allclose(layer.data_to_world(in_section[name]), (fy, fx), atol=0.01 * np.hypot(*pair.fixed.shape[:2]))
    widget.reset()
    for name, layer in layers.items():
        np.testing.assert_array_equal(layer.affine.affine_matrix, before[name])
