"""How long the napari event loop stalls while the Register widget works (run under ``xvfb-run -a``).

A 50 ms QTimer ticks in the GUI thread; the largest gap between two ticks, minus the 50 ms, is the
longest the GUI was frozen. Measured idle (the baseline: what the viewer itself costs), then over
``--runs`` registrations of the sample pair, optionally with ``--load N`` busy processes competing
for the CPU (a loaded machine). Prints a markdown table.

usage: xvfb-run -a python benchmarks/bench_gui_latency.py [--runs 5] [--load 0]
"""
from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np

TICK_MS = 50


def _busy(stop_at: float) -> None:
    while time.time() < stop_at:
        sum(i * i for i in range(10_000))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load", type=int, default=0, help="busy processes running alongside")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-histoaffine", "Register sections (with sample pair)")
    app = QApplication.instance()
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(TICK_MS)

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)

    def stall(start: int) -> float:
        gaps = np.diff(ticks[start:]) * 1000 - TICK_MS
        return float(gaps.max()) if len(gaps) else float("nan")

    pump(1.0)  # the window settles
    workers = [multiprocessing.Process(target=_busy, args=(time.time() + 600,)) for _ in range(args.load)]
    for w in workers:
        w.start()
    try:
        start = len(ticks)
        pump(3.0)
        idle = stall(start)
        stalls, seconds = [], []
        for _ in range(args.runs):
            start, began = len(ticks), time.perf_counter()
            widget.register_button.click()
            while widget.worker is not None:
                app.processEvents()
                time.sleep(0.001)
            seconds.append(time.perf_counter() - began)
            pump(0.3)  # the result's layer updates and redraws land here
            stalls.append(stall(start))
    finally:
        for w in workers:
            w.terminate()
    timer.stop()
    print(f"| measure ({args.load} busy processes) | largest event-loop stall [ms] |\n|---|---:|")
    print(f"| idle viewer, 3 s | {idle:.0f} |")
    print(f"| during a registration (median of {args.runs}) | {np.median(stalls):.0f} |")
    print(f"| during a registration (worst of {args.runs}) | {max(stalls):.0f} |")
    print(f"registration wall time in the GUI: median {np.median(seconds):.2f} s")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
