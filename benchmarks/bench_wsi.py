"""Whole-slide benchmark: register a ≥ 40k × 30k pyramidal pair, warp it to OME-TIFF, batch serial vs 2 workers.

Builds, in a temporary folder (never in the repository), two JPEG-tiled pyramidal OME-TIFFs of about
41000 × 30400 px by upsampling two stains of ``shared/data/anhir-lung-lesion-3`` tile by tile (the moving
one also rotated and shifted by a known transform), then measures in fresh subprocesses:

* ``histoaffine register`` of the pair: wall time, registration time and peak RSS (``ru_maxrss``),
  and the landmark rTRE (ANHIR landmarks scaled to the slides);
* ``histoaffine warp`` of the moving slide onto the fixed slide's grid: time, MPx/s, peak RSS, and its
  ratio to a plain decode + re-encode of the same moving slide (every level's tiles decoded by tifffile
  and written again as a JPEG-tiled pyramid), measured in the same run;
* ``histoaffine --help`` and ``histoaffine register`` wall times of fresh processes (interpreter included);
* ``histoaffine evaluate`` of ``shared/data/bench-lung-lesion-3/pairs.csv`` serially and with ``--workers 2``.

Usage: ``nice python benchmarks/bench_wsi.py [--scale 46] [--keep DIR] [--skip-batch]``. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = SHARED / "anhir-lung-lesion-3"
FIXED, MOVING = "29-041-Izd2-w35-He-les3", "29-041-Izd2-w35-CD31-3-les3"

_MEASURE = r"""
import json, resource, sys, time
from napari_histoaffine.cli import main
start = time.perf_counter()
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


_REENCODE = r"""
import json, resource, sys, time
import tifffile
start = time.perf_counter()
with tifffile.TiffFile(sys.argv[1]) as src, tifffile.TiffWriter(sys.argv[2], bigtiff=True, ome=True) as out:
    levels = src.series[0].levels
    for k, level in enumerate(levels):
        page = level.pages[0]
        tiles = (segment[0] for segment, _, _ in page.segments())
        extra = {"subifds": len(levels) - 1} if k == 0 else {"subfiletype": 1}
        out.write(tiles, shape=level.shape, dtype=level.dtype, tile=(page.tilelength, page.tilewidth),
                  photometric="rgb", compression="jpeg", compressionargs={"level": 90}, **extra)
print(json.dumps({"seconds": time.perf_counter() - start,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def wall(*command) -> float:
    """Wall time of a fresh process, interpreter start-up included."""
    start = time.perf_counter()
    subprocess.run([str(c) for c in command], check=True, capture_output=True)
    return time.perf_counter() - start


def run_cli(*args, env=None) -> tuple[dict, str]:
    """Run ``histoaffine ARGS`` in a fresh interpreter; returns its measurements and its other output."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, args)], capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines:
        raise RuntimeError(f"histoaffine {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def build_slides(folder: Path, scale: float):
    """Upsampled fixed and moving slides (the moving one rotated 30° and shifted) with their landmarks."""
    from napari_histoaffine import transforms
    from napari_histoaffine.files.images import read_image
    from napari_histoaffine.files.tables import read_landmarks, write_landmarks
    from napari_histoaffine.warp import warp_to_ome_tiff

    small_fixed = read_image(IMAGES / "images" / f"{FIXED}.jpg").data
    small_moving = read_image(IMAGES / "images" / f"{MOVING}.jpg").data
    big = tuple(round(v * scale) for v in small_fixed.shape[:2])
    up_fixed = transforms.resample_matrix(small_fixed.shape, big)
    up_moving = transforms.resample_matrix(small_moving.shape, big)
    centre = ((big[1] - 1) / 2, (big[0] - 1) / 2)
    pose = transforms.compose(transforms.rotation(30, centre), transforms.translation(0.03 * big[1], -0.02 * big[0]))
    times = {}
    for name, path, matrix in (("fixed", IMAGES / "images" / f"{FIXED}.jpg", up_fixed),
                               ("moving", IMAGES / "images" / f"{MOVING}.jpg", transforms.compose(up_moving, pose))):
        start = time.perf_counter()
        warp_to_ome_tiff(path, matrix, big, folder / f"{name}.ome.tif", compression="jpeg", quality=85,
                         background=240)
        times[name] = time.perf_counter() - start
    write_landmarks(folder / "fixed.csv",
                    transforms.apply_to_points(up_fixed, read_landmarks(IMAGES / "landmarks" / f"{FIXED}.csv")))
    write_landmarks(folder / "moving.csv", transforms.apply_to_points(
        transforms.compose(up_moving, pose), read_landmarks(IMAGES / "landmarks" / f"{MOVING}.csv")))
    return big, times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=46.0, help="upsampling of the 892 x 661 px sources")
    parser.add_argument("--keep", metavar="DIR", help="build the slides in DIR and keep them")
    parser.add_argument("--skip-batch", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="histoaffine-wsi-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        shape, built = build_slides(folder, args.scale)
        size_mb = sum((folder / f"{n}.ome.tif").stat().st_size for n in ("fixed", "moving")) / 2**20
        rows.append(("slides", f"{shape[1]} x {shape[0]} px RGB, JPEG tiles 256, {size_mb:.0f} MB for both; "
                               f"built in {built['fixed']:.0f} + {built['moving']:.0f} s"))

        histoaffine = Path(sys.executable).parent / "histoaffine"
        rows.append(("histoaffine --help (fresh process)", f"{wall(histoaffine, '--help'):.2f} s wall"))
        started = time.perf_counter()
        stats, text = run_cli("register", folder / "moving.ome.tif", folder / "fixed.ome.tif", "--out", folder / "reg",
                              "--moving-landmarks", folder / "moving.csv", "--fixed-landmarks", folder / "fixed.csv")
        fresh = time.perf_counter() - started
        saved = json.loads((folder / "reg" / "transform.json").read_text())
        rows.append(("register (CLI, fresh process)", f"{fresh:.2f} s wall with interpreter start-up; "
                     f"{stats['seconds']:.2f} s in main() incl. imports, reading levels and "
                     f"writing outputs; registration {sum(saved['timings'].values()):.2f} s; "
                     f"peak RSS {stats['rss_mb']:.0f} MB"))
        rows.append(("register result", text.replace("|", "/")))

        px = shape[0] * shape[1] / 1e6
        stats, _ = run_cli("warp", folder / "moving.ome.tif", folder / "reg" / "transform.json",
                           "--like", folder / "fixed.ome.tif", "--out", folder / "warped.ome.tif")
        out_mb = (folder / "warped.ome.tif").stat().st_size / 2**20
        copy = subprocess.run([sys.executable, "-c", _REENCODE, folder / "moving.ome.tif", folder / "copy.ome.tif"],
                              capture_output=True, text=True, check=True)
        copied = json.loads(copy.stdout.strip().splitlines()[-1])
        rows.append(("warp + write OME-TIFF (full res, all levels)",
                     f"{stats['seconds']:.1f} s, {px / stats['seconds']:.1f} MPx/s (level 0 {px:.0f} MPx), "
                     f"peak RSS {stats['rss_mb']:.0f} MB, {out_mb:.0f} MB written"))
        rows.append(("decode + re-encode of the moving slide (tifffile, same run)",
                     f"{copied['seconds']:.1f} s, peak RSS {copied['rss_mb']:.0f} MB; "
                     f"warp / re-encode = {stats['seconds'] / copied['seconds']:.2f}"))

        if not args.skip_batch:
            pairs = SHARED / "bench-lung-lesion-3" / "pairs.csv"
            n = sum(1 for _ in open(pairs)) - 1
            serial, _ = run_cli("evaluate", pairs, "--out", folder / "serial")
            parallel, _ = run_cli("evaluate", pairs, "--out", folder / "workers2", "--workers", 2)
            rows.append((f"evaluate {n} pairs, serial", f"{serial['seconds']:.1f} s"))
            rows.append((f"evaluate {n} pairs, --workers 2", f"{parallel['seconds']:.1f} s (incl. cluster start)"))
            a = (folder / "serial" / "results.csv").read_text().splitlines()[0]
            rows.append(("same results columns", str(a == (folder / "workers2" / "results.csv").read_text().splitlines()[0])))
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
