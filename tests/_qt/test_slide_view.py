"""A whole slide viewed at full resolution loads little more than the view shows (issue 27: panning a
registered slide pair stalled the display 0.18-0.49 s for every new view, decoding four to sixteen
times the pixels on screen)."""
from __future__ import annotations

import numpy as np
import tifffile

TILE = 256
VIEW = 500  # canvas side in screen pixels


def test_a_full_resolution_view_of_a_slide_decodes_only_the_tiles_around_it(make_napari_viewer, qtbot, tmp_path):
    path = tmp_path / "slide.tif"
    base = np.random.default_rng(0).integers(0, 255, (4096, 4096, 3), np.uint8)
    options = dict(tile=(TILE, TILE), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, subifds=2, **options)
        tif.write(base[::2, ::2], subfiletype=1, **options)
        tif.write(base[::4, ::4], subfiletype=1, **options)
    viewer = make_napari_viewer(show=True)
    layer = viewer.open(str(path), plugin="napari-histoaffine")[0]
    viewer.window._qt_viewer.canvas.size = (VIEW, VIEW)
    viewer.camera.zoom = 1.0                   # one screen pixel per level-0 pixel
    viewer.camera.center = (1024, 1024)        # the view straddles tile boundaries in both directions
    qtbot.waitUntil(lambda: layer.data_level == 0 and (layer.corner_pixels[1] > 1024).all(), timeout=5000)
    loaded = layer.corner_pixels[1] - layer.corner_pixels[0] + 1
    assert (loaded <= VIEW + 2 * TILE).all(), loaded  # at most a tile beyond each edge of the view
    np.testing.assert_array_equal(np.asarray(layer.data[0][1000:1010, 1000:1010]), base[1000:1010, 1000:1010])
