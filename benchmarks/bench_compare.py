"""Side-by-side comparison of registration methods on one pairs table, scored by the shared score.py.

Usage: nice python benchmarks/bench_compare.py [--cases DIR] [--out DIR] [--score PATH] [--threads N]
                                              [--held-out-stains A,B,...]

``--held-out-stains`` keeps only the cases both of whose stains (the two sides of ``_to_`` in the
Case name) are among those named, i.e. cases the shipped network never saw in training; the
filtered table (absolute paths) is written to ``OUT/cases/pairs.csv`` and scored from there.

All methods see the same decoded images (decoding is outside the timer), in the same process with
the same thread settings (torch, OpenCV, ITK/elastix, OMP). Per method the script writes
``OUT/<method>/<Case>.csv`` and ``times.csv`` (a failed pair leaves no CSV: the scorer counts it as
the identity; its message goes to ``errors.csv``), scores the folder with score.py, prints one
markdown table and draws ``OUT/rtre_cumulative.png`` (cumulative landmark rTRE of all methods).
Before timing, every method registers a synthetic pair (the first fixed image moved by a known
affine) as warm-up and as a check of its transform convention; a failing elastix check aborts.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ELASTIX_SIZE, SIFT_SIZE = 256, 384


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=str(ROOT.parent / "shared" / "data" / "bench-lung-lesion-3"),
                    help="folder with pairs.csv (ANHIR/BIRL layout)")
    ap.add_argument("--out", default="/tmp/histoaffine-compare")
    ap.add_argument("--score", default=str(ROOT.parent / "shared" / "bench" / "score.py"))
    ap.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    ap.add_argument("--held-out-stains", default="", metavar="A,B",
                    help="only cases whose two stains are both among these (e.g. the stains left out of training)")
    return ap.parse_args()


ARGS = parse_args()
CASES = Path(ARGS.cases)
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before the libraries start their thread pools

import cv2  # noqa: E402
import itk  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from napari_histoaffine.evaluation import metrics  # noqa: E402
from napari_histoaffine.evaluation.evaluate import _landmark_rtre  # noqa: E402
from napari_histoaffine.files.images import ImageLevel, read_pair  # noqa: E402
from napari_histoaffine.files.tables import read_landmarks, read_pairs_table, write_landmarks  # noqa: E402
from napari_histoaffine.plugin.layer_transforms import fit_affine  # noqa: E402
from napari_histoaffine.registration.features import StructurePyramid  # noqa: E402
from napari_histoaffine.registration.options import DEFAULT_WORKING_SIZE, RegistrationOptions  # noqa: E402
from napari_histoaffine.registration.pipeline import register  # noqa: E402
from napari_histoaffine.registration.pose import search_pose  # noqa: E402
from napari_histoaffine.registration.grayscale import to_grayscale  # noqa: E402
from napari_histoaffine.registration.preprocess import prepare_pair, resample, working_factor  # noqa: E402
from napari_histoaffine.registration.weights import default_weights_path  # noqa: E402
from napari_histoaffine.transforms import (  # noqa: E402
    apply_to_points,
    compose,
    identity,
    invert,
    rotation,
    scaling,
    translation,
    warp_image,
)

torch.set_num_threads(ARGS.threads)
cv2.setNumThreads(ARGS.threads)
itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(ARGS.threads)


def small_pair(moving, fixed, long_side, inverted=False):
    """Grayscale of both images at one common factor (larger long side = ``long_side``): [(image, small → input)]."""
    factor = working_factor([moving.shape, fixed.shape], long_side)
    return [resample(1.0 - g if inverted else g, factor) for g in (to_grayscale(moving), to_grayscale(fixed))]


def elastix_affine(moving, fixed):
    """elastix's default affine map (Mattes MI, 4 levels) → matrix moving → fixed pixels (x, y)."""
    params = itk.ParameterObject.New()
    pmap = params.GetDefaultParameterMap("affine", 4)
    pmap["WriteResultImage"] = ["false"]
    params.AddParameterMap(pmap)
    _, result = itk.elastix_registration_method(
        itk.image_from_array(np.ascontiguousarray(fixed, np.float32)),
        itk.image_from_array(np.ascontiguousarray(moving, np.float32)),
        parameter_object=params, log_to_console=False, number_of_threads=ARGS.threads)
    found = result.GetParameterMap(0)
    p = np.array(found["TransformParameters"], float)
    centre = np.array(found["CenterOfRotationPoint"], float)
    # elastix maps FIXED points to MOVING points: q = A (p - c) + c + t (index = physical: spacing 1, origin 0).
    fixed_to_moving = identity()
    fixed_to_moving[:2, :2] = p[:4].reshape(2, 2)
    fixed_to_moving[:2, 2] = centre + p[4:6] - p[:4].reshape(2, 2) @ centre
    return invert(fixed_to_moving)


def elastix_alone(moving, fixed):
    (m, m_in), (f, f_in) = small_pair(moving, fixed, ELASTIX_SIZE, inverted=True)
    return compose(invert(m_in), elastix_affine(m, f), f_in)


def rotation_then_elastix(moving, fixed):
    """Our best pose warps the moving image onto the fixed grid; elastix refines from there; the two compose."""
    pm, pf = prepare_pair(moving, fixed)
    (m, m_in), (f, f_in) = small_pair(moving, fixed, ELASTIX_SIZE, inverted=True)
    pose = search_pose(StructurePyramid(pm, pf))[0].matrix
    start = compose(invert(pm.to_input), pose, pf.to_input, invert(f_in))  # → fixed small
    warped = warp_image(m, compose(m_in, start), f.shape)
    return compose(start, elastix_affine(warped, f), f_in)


def sift_ransac(moving, fixed):
    """SIFT, Lowe ratio test 0.75, RANSAC affine (3 px); identity when no estimate."""
    (m, m_in), (f, f_in) = small_pair(moving, fixed, SIFT_SIZE)
    sift = cv2.SIFT_create()
    (km, dm), (kf, df) = (sift.detectAndCompute(np.uint8(np.round(g * 255)), None) for g in (m, f))
    if dm is None or df is None or len(dm) < 2 or len(df) < 2:
        return identity()
    good = [ab[0] for ab in cv2.BFMatcher().knnMatch(dm, df, k=2)
            if len(ab) == 2 and ab[0].distance < 0.75 * ab[1].distance]
    if len(good) < 3:
        return identity()
    src = np.float32([km[g.queryIdx].pt for g in good])
    dst = np.float32([kf[g.trainIdx].pt for g in good])
    affine, _ = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
    if affine is None or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:, :2])) < 1e-6:
        return identity()
    return compose(invert(m_in), np.vstack([affine, [0.0, 0.0, 1.0]]), f_in)


def landmark_fit(pair):
    """Least-squares affine of the expert landmarks themselves: the best any affine method can reach."""
    return fit_affine(read_landmarks(pair.moving_landmarks), read_landmarks(pair.fixed_landmarks))


def held_out_cases(cases: Path, stains: list[str], out: Path) -> Path:
    """A copy of the pairs table with only the cases whose two stains are both in ``stains``."""
    table = pd.read_csv(cases / "pairs.csv")
    sides = table["Case"].str.split("__").str[0].str.split("_to_")
    keep = sides.map(lambda ab: len(ab) == 2 and all(any(s in side for s in stains) for side in ab))
    table = table[keep].copy()
    for column in ("Target image", "Source image", "Target landmarks", "Source landmarks"):
        table[column] = table[column].map(lambda p: str((cases / p).resolve()))
    (out / "cases").mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "cases" / "pairs.csv", index=False)
    return out / "cases"


def on_levels(fn):
    """Method on the decoded arrays → method on ImageLevel pairs returning the full-resolution matrix."""
    return lambda m, f: compose(invert(m.to_full), fn(m.data, f.data), f.to_full)


def pipeline(**options):
    return lambda m, f: register(m, f, RegistrationOptions(**options)).matrix


DEFAULT = "default pipeline (rotation + network + refinement)"
NO_NETWORK = "the same without the network (--model none)"
METHODS = {  # name: (results folder, function of two ImageLevels → full-resolution matrix moving → fixed)
    "identity (no transform)": ("identity", None),
    "best affine fit of the landmarks (oracle)": ("landmark-fit", "oracle"),
    "rotation search only": ("rotation-search", pipeline(model=None, refine=False)),
    "rotation + network (the paper's method)": ("rotation-network", pipeline(model="default", refine=False)),
    DEFAULT: ("default-pipeline", pipeline()),
    NO_NETWORK: ("no-network", pipeline(model=None)),
    "elastix affine alone (Mattes MI, 4 levels, 256 px)": ("elastix-affine", on_levels(elastix_alone)),
    "rotation search, then elastix affine (\"iterative\")": ("rotation-elastix", on_levels(rotation_then_elastix)),
    "SIFT + RANSAC affine (384 px)": ("sift-ransac", on_levels(sift_ransac)),
}


def synthetic_check(level):
    """Register the image moved by a known affine onto itself; median landmark error per method as rTRE."""
    h, w = level.data.shape[:2]
    truth = compose(rotation(12.0, (w / 2, h / 2)), scaling(1.06), translation(0.03 * w, -0.02 * h))
    white = 255.0 if level.data.dtype == np.uint8 else float(level.data.max())
    moving = ImageLevel(warp_image(level.data, invert(truth), (h, w), cval=white).astype(level.data.dtype),
                           (h, w), 0, "synthetic")
    fixed = ImageLevel(level.data, (h, w), 0, "synthetic")
    grid = np.stack(np.meshgrid(np.linspace(0.2 * w, 0.8 * w, 5), np.linspace(0.2 * h, 0.8 * h, 5)), -1).reshape(-1, 2)
    errors = {}
    for name, (_, fn) in METHODS.items():
        if callable(fn):
            error = metrics.tre(apply_to_points(fn(moving, fixed), grid), apply_to_points(truth, grid))
            errors[name] = float(np.median(error)) / metrics.image_diagonal((h, w))
    return errors


def score(results_dir):
    report = results_dir / "score.json"
    subprocess.run([sys.executable, ARGS.score, str(CASES), str(results_dir), "--json", str(report), "--quiet"],
                   check=True)
    return json.loads(report.read_text())["groups"]["all"]


def plot_cumulative(curves: dict, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, values in curves.items():
        x = np.sort(np.maximum(values, 1e-5))
        ax.step(x, np.arange(1, len(x) + 1) / max(len(x), 1), where="post", label=name)
    ax.axvline(metrics.SUCCESS_RTRE, color="grey", linestyle=":", label=f"rTRE = {metrics.SUCCESS_RTRE}")
    ax.set(xscale="log", xlabel="landmark rTRE", ylabel="fraction of landmarks", ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main():
    global CASES
    if default_weights_path() is None:
        print("rotation + network: row skipped, no model ships (default pipeline = rotation search + refinement)")
        del METHODS["rotation + network (the paper's method)"]
    out = Path(ARGS.out)
    stains = [s.strip() for s in ARGS.held_out_stains.split(",") if s.strip()]
    if stains:
        CASES = held_out_cases(CASES, stains, out)
    pairs = read_pairs_table(CASES / "pairs.csv")
    for folder, _ in METHODS.values():
        (out / folder).mkdir(parents=True, exist_ok=True)
        for old in (out / folder).glob("*.csv"):
            old.unlink()
    check = synthetic_check(read_pair(pairs[0].moving_image, pairs[0].fixed_image, DEFAULT_WORKING_SIZE)[1])  # also the warm-up
    print("synthetic check, median rTRE:", ", ".join(f"{n.split(' (')[0]} {e:.4f}" for n, e in check.items()))
    if max(e for n, e in check.items() if "elastix" in n) > metrics.SUCCESS_RTRE:
        sys.exit("elastix's transform convention check failed: not scoring")
    seconds = {name: {} for name in METHODS}
    errors = {name: [] for name in METHODS}
    diagonals = []
    for pair in tqdm(pairs, unit="pair"):
        moving, fixed = read_pair(pair.moving_image, pair.fixed_image, DEFAULT_WORKING_SIZE)  # decoded outside the timer
        source = read_landmarks(pair.moving_landmarks)
        diagonals.append(metrics.image_diagonal(fixed.full_shape))
        for name, (folder, fn) in METHODS.items():
            try:
                start = time.perf_counter()
                matrix = identity() if fn is None else landmark_fit(pair) if fn == "oracle" else fn(moving, fixed)
                seconds[name][pair.case] = time.perf_counter() - start if callable(fn) else 0.0
                if not np.all(np.isfinite(matrix)):
                    raise ValueError("non-finite transform")
                write_landmarks(out / folder / f"{pair.case}.csv", apply_to_points(matrix, source))
            except Exception as exc:  # noqa: BLE001 - one bad pair must not stop the comparison
                errors[name].append((pair.case, f"{type(exc).__name__}: {exc}"))
    rows, curves = [], {}
    for name, (folder, _) in METHODS.items():
        pd.Series(seconds[name], name="seconds").rename_axis("Case").to_csv(out / folder / "times.csv")
        with open(out / folder / "errors.csv", "w", newline="") as f:
            csv.writer(f).writerows([("Case", "error"), *errors[name]])
        s = score(out / folder)
        rows.append(f"| {name} | {s['MMrTRE']:.4f} | {s['AMrTRE']:.4f} | {s['mean_max_rTRE']:.4f} | "
                    f"{s['success_pct']:.1f} | {s['median_s']:.3f} |")
        curves[name.split(" (")[0]] = _landmark_rtre(pairs, pd.DataFrame({"diagonal": diagonals}), out / folder)[1]
    plot_cumulative(curves, out / "rtre_cumulative.png")
    print(f"\n{len(pairs)} pairs of {CASES.resolve()}; scored by {ARGS.score}; registration time only "
          f"(images decoded beforehand); {ARGS.threads} thread(s) for torch, OpenCV, ITK/elastix and OMP; "
          f"torch {torch.__version__}, itk {itk.Version.GetITKVersion()}, OpenCV {cv2.__version__}\n")
    print("| method | MMrTRE | AMrTRE | mean max rTRE | success % | median s/pair |\n|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    medians = {n: np.median(list(s.values())) for n, s in seconds.items() if s}
    for name in (n for n in medians if "elastix" in n or n == NO_NETWORK):
        print(f"{name}: {medians[name] / medians[DEFAULT]:.2f}× the default pipeline's median time")
    for name, errs in errors.items():
        if errs:
            print(f"{name}: {len(errs)} pair(s) failed, see {out / METHODS[name][0] / 'errors.csv'}")
    print(f"cumulative rTRE plot: {out / 'rtre_cumulative.png'}")


if __name__ == "__main__":
    main()
