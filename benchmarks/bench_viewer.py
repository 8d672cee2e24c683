"""napari reader benchmark: time to the first frame of a large pyramidal slide, and memory while panning.

Opens a slide (default: builds the ~41k x 30k moving slide of ``bench_wsi.py`` unless ``--slide`` names one)
with this plugin's reader in a real viewer (run under ``xvfb-run -a``), then pans across level 0 in a
grid of views. Reports the time from ``viewer.open`` to the first drawn frame, the time per panned view
(until its tiles are on screen) and the process's resident memory after each view, so a reader that
decodes whole levels or caches without bound shows up.

Usage: ``xvfb-run -a python benchmarks/bench_viewer.py [--slide PATH] [--views 16]``. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))


def settle(viewer, app, seconds: float = 0.3) -> None:
    """Process events until napari has nothing left to load, for at least ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", help="pyramidal slide to open (default: build one as bench_wsi.py does)")
    parser.add_argument("--scale", type=float, default=46.0, help="upsampling when building the slide")
    parser.add_argument("--views", type=int, default=16, help="level-0 views to pan through")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="histoaffine-viewer-"))
    if args.slide:
        slide = Path(args.slide)
    else:
        from bench_wsi import build_slides

        build_slides(folder, args.scale)
        slide = folder / "moving.ome.tif"

    import napari
    from qtpy.QtWidgets import QApplication

    process = psutil.Process()
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    settle(viewer, app)
    rss = [process.memory_info().rss / 2**20]
    start = time.perf_counter()
    layer = viewer.open(str(slide), plugin="napari-histoaffine")[0]
    viewer.screenshot(canvas_only=True)  # forces a draw of what is loaded
    first_frame = time.perf_counter() - start
    rss.append(process.memory_info().rss / 2**20)
    rows, cols = layer.data[0].shape[:2]
    side = int(np.ceil(np.sqrt(args.views)))
    pans = []
    viewer.camera.zoom = 1.0  # one screen pixel per level-0 pixel: napari shows level 0
    for i in range(args.views):
        centre = ((i // side + 0.5) / side * rows, (i % side + 0.5) / side * cols)
        started = time.perf_counter()
        viewer.camera.center = centre
        settle(viewer, app, 0.05)
        viewer.screenshot(canvas_only=True)
        pans.append(time.perf_counter() - started)
        rss.append(process.memory_info().rss / 2**20)
    viewer.close()
    print("| measure | value |\n|---|---|")
    print(f"| slide | {slide.name}: {cols} x {rows} px, {len(layer.data)} levels |")
    print(f"| time to first frame | {first_frame:.2f} s (viewer.open to a drawn canvas) |")
    print(f"| pan to a new level-0 view | median {np.median(pans):.2f} s, max {max(pans):.2f} s ({len(pans)} views) |")
    print(f"| resident memory | {rss[0]:.0f} MB with an empty viewer, {rss[1]:.0f} MB at first frame, "
          f"{max(rss):.0f} MB peak while panning |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
