"""How long napari's display stalls while panning a registered whole-slide pair (run under ``xvfb-run -a``).

Builds the slide pair of ``bench_wsi.py`` (at ``--scale``), opens both with this plugin's reader, shows the
moving slide through the registration (the known pose of the builder, as the Register dock would set it),
then pans across ``--views`` level-0 views. A 10 ms QTimer ticks in the GUI thread; each gap beyond 10 ms
is a stall. ``--async-slicing on`` turns on napari's experimental asynchronous rendering for the run only.

usage: xvfb-run -a python benchmarks/bench_pan.py [--scale 20] [--views 16] [--async-slicing off|on]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

TICK_MS = 10


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=20.0, help="upsampling of the 892 x 661 px sources")
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--async-slicing", choices=("off", "on"), default="off")
    args = parser.parse_args(argv)
    from bench_viewer import settle
    from bench_wsi import build_slides

    folder = Path(tempfile.mkdtemp(prefix="histoaffine-pan-"))
    (rows, cols), _ = build_slides(folder, args.scale)

    import napari
    from napari.settings import get_settings
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_histoaffine import transforms

    settings = get_settings().experimental
    previous, settings.async_ = settings.async_, args.async_slicing == "on"
    try:
        viewer = napari.Viewer(show=True)
        app = QApplication.instance()
        viewer.open(str(folder / "fixed.ome.tif"), plugin="napari-histoaffine")
        moving = viewer.open(str(folder / "moving.ome.tif"), plugin="napari-histoaffine")[0]
        centre = ((cols - 1) / 2, (rows - 1) / 2)  # the builder's pose, as in bench_wsi.build_slides
        pose = transforms.compose(transforms.rotation(30, centre), transforms.translation(0.03 * cols, -0.02 * rows))
        moving.affine = transforms.xy_to_rowcol(transforms.invert(pose))
        moving.opacity = 0.5
        ticks = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        viewer.camera.zoom = 1.0  # one screen pixel per level-0 pixel
        settle(viewer, app, 1.0)
        timer.start(TICK_MS)
        side = int(np.ceil(np.sqrt(args.views)))
        for i in range(args.views):
            viewer.camera.center = ((i // side + 0.5) / side * rows, (i % side + 0.5) / side * cols)
            settle(viewer, app, 0.6)
        timer.stop()
        viewer.close()
    finally:
        settings.async_ = previous
    stalls = np.diff(ticks) * 1000 - TICK_MS
    print("| measure | value |\n|---|---|")
    print(f"| slides | {cols} x {rows} px, {args.views} level-0 views, async slicing {args.async_slicing} |")
    print(f"| largest stall | {stalls.max():.0f} ms |")
    print(f"| 99th percentile | {np.percentile(stalls, 99):.0f} ms |")
    print(f"| stalls over 100 ms | {int(np.sum(stalls > 100))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
