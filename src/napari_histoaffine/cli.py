"""The ``histoaffine`` command line: one function adds each subcommand to the parser.

Errors meant for users (:class:`HistoAffineError`, missing or unwritable files) end the program with
one line ``histoaffine: error: <message>`` on stderr and exit code 2. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import __version__, transforms
from .errors import HistoAffineError
from .evaluation import metrics
from .evaluation.evaluate import evaluate_table, format_summary, read_pair, register_levels, summarize
from .files.atomic import write_json
from .files.images import ImageLevel, read_image, write_image
from .files.tables import read_landmarks, write_landmarks
from .files.tiles import image_shape
from .progress import Progress
from .registration.preprocess import DEFAULT_WORKING_SIZE
from .warp import warp_to_ome_tiff


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _registration_options() -> argparse.ArgumentParser:
    """Options shared by every subcommand that registers."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("registration")
    group.add_argument("--model", default="default", metavar="default|none|PATH",
                       help="network weights: the shipped default, none (pose search and refinement only) or a file")
    group.add_argument("--no-refine", action="store_true", help="skip the intensity refinement")
    group.add_argument("--no-mirror", action="store_true", help="do not try mirrored poses")
    group.add_argument("--working-size", type=_positive_int, default=DEFAULT_WORKING_SIZE, metavar="N",
                       help=f"long side of the working images in pixels (default {DEFAULT_WORKING_SIZE})")
    return parent


def _register_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`~napari_histoaffine.registration.pipeline.register` from the parsed options."""
    return {"model": None if args.model.lower() == "none" else args.model, "refine": not args.no_refine,
            "search_mirror": not args.no_mirror, "working_size": args.working_size}


def _report(progress: Progress) -> None:
    print(f"[{progress.fraction:4.0%}] {progress.message}", file=sys.stderr, flush=True)


def _to_uint8(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Warped float pixels back to 8 bits (integer inputs scaled from their range, floats from [0, 1])."""
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    return np.clip(np.round(image * (255.0 / top)), 0, 255).astype(np.uint8)


def _run_register(args: argparse.Namespace) -> int:
    if args.fixed_landmarks and not args.moving_landmarks:
        raise HistoAffineError("--fixed-landmarks needs --moving-landmarks")
    source = read_landmarks(args.moving_landmarks) if args.moving_landmarks else None
    target = read_landmarks(args.fixed_landmarks) if args.fixed_landmarks else None
    moving, fixed = read_pair(args.moving, args.fixed, args.working_size)
    diagonal = metrics.image_diagonal(fixed.full_shape)
    if target is not None:
        metrics.landmark_stats(source, target, diagonal)  # different lengths fail before the registration
    result = register_levels(moving, fixed, on_progress=_report, **_register_options(args))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"moving_image": args.moving, "fixed_image": args.fixed,
             "moving_landmarks": args.moving_landmarks, "fixed_landmarks": args.fixed_landmarks}
    write_json(out / "transform.json", {**result.to_dict(), **{k: v and str(Path(v).resolve()) for k, v in paths.items()}})
    warped, dtype, note = _preview(args.moving, moving, result)
    write_image(out / "warped.png", _to_uint8(warped, dtype))

    flip = ", mirrored" if result.flipped else ""
    stages = ", ".join(f"{s} {t * 1000:.0f} ms" for s, t in result.timings.items())
    verdict = result.verdict
    line = (f"registered in {result.seconds:.2f} s ({stages}); rotation {result.rotation_deg:.1f} deg{flip}; "
            f"confidence {verdict.confidence:.2f}{', FLAGGED' if verdict.flagged else ''} ({verdict.reason})")
    if source is not None:
        moved = transforms.apply_to_points(result.matrix, source)
        write_landmarks(out / "warped_landmarks.csv", moved)
        if target is not None:
            stats = metrics.landmark_stats(moved, target, diagonal, initial_xy=source)
            line += f"; rTRE median {stats.rtre_median:.4f} mean {stats.rtre_mean:.4f} max {stats.rtre_max:.4f}"
    print(line + note)
    return 0


PREVIEW_MAX = 2048  # long side of warped.png for whole-slide images; `histoaffine warp` writes full resolution


def _preview(moving_path, moving: ImageLevel, result) -> tuple[np.ndarray, np.dtype, str]:
    """The moving image warped onto the fixed grid, reduced to PREVIEW_MAX px for slides (read from their pyramid)."""
    scale = min(1.0, PREVIEW_MAX / max(result.fixed_shape))
    if scale == 1.0:
        full = moving if moving.level == 0 else read_image(moving_path)
        return transforms.warp_image(full.data, result.matrix, result.fixed_shape), full.data.dtype, ""
    shape = tuple(max(1, round(v * scale)) for v in result.fixed_shape)
    level = read_image(moving_path, max_long_side=int(np.ceil(max(moving.full_shape) * scale)))
    matrix = transforms.compose(level.to_full, result.matrix, transforms.resample_matrix(result.fixed_shape, shape))
    return (transforms.warp_image(level.data, matrix, shape), level.data.dtype,
            f"; warped.png is {shape[0]}x{shape[1]} px (full resolution: histoaffine warp)")


def _add_register(subparsers) -> None:
    p = subparsers.add_parser("register", parents=[_registration_options()],
                              help="register one moving image onto a fixed image",
                              description="Register MOVING onto FIXED; writes transform.json, warped.png and, "
                                          "with landmarks, warped_landmarks.csv to --out.")
    p.add_argument("moving", metavar="MOVING")
    p.add_argument("fixed", metavar="FIXED")
    p.add_argument("--moving-landmarks", metavar="CSV", help="ANHIR landmarks of MOVING (mapped into FIXED)")
    p.add_argument("--fixed-landmarks", metavar="CSV", help="ANHIR landmarks of FIXED (to report rTRE)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=_run_register)


def _run_demo(args: argparse.Namespace) -> int:
    from .sample import make_pair

    pair = make_pair()
    inputs = Path(args.out) / "sample"
    inputs.mkdir(parents=True, exist_ok=True)
    write_image(inputs / "moving.png", pair.moving)
    write_image(inputs / "fixed.png", pair.fixed)
    write_landmarks(inputs / "moving.csv", pair.moving_landmarks)
    write_landmarks(inputs / "fixed.csv", pair.fixed_landmarks)
    print(f"sample pair written to {inputs}", file=sys.stderr)
    return main(["register", str(inputs / "moving.png"), str(inputs / "fixed.png"),
                 "--moving-landmarks", str(inputs / "moving.csv"), "--fixed-landmarks", str(inputs / "fixed.csv"),
                 "--out", str(Path(args.out) / "registered")])


def _add_demo(subparsers) -> None:
    p = subparsers.add_parser("demo", help="register the built-in sample pair (ihc.png, re-stained and warped)",
                              description="Writes the sample pair with its landmarks to OUT/sample, registers it "
                                          "into OUT/registered and prints the landmark error.")
    p.add_argument("--out", default="histoaffine-demo", metavar="DIR")
    p.set_defaults(func=_run_demo)


def _batch_options() -> argparse.ArgumentParser:
    """Options shared by the subcommands that run a table of pairs."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("batch")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive_int, metavar="N",
                       help="run pairs as tasks on a local dask cluster of N processes")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run pairs on a running dask.distributed cluster (its workers must see the same paths)")
    group.add_argument("--resume", action="store_true",
                       help="skip pairs that a previous run into --out finished (their row in results.csv "
                            "and their output file exist)")
    return parent


def _run_evaluate(args: argparse.Namespace) -> int:
    if args.workers or args.scheduler or args.resume:
        from .evaluation import batch

        results = batch.run_batch(args.pairs, args.out, workers=args.workers, scheduler=args.scheduler,
                                  resume=args.resume, **_register_options(args))
    else:
        results = evaluate_table(args.pairs, args.out, **_register_options(args))
    print(format_summary(summarize(results)), end="")
    return 0


def _add_evaluate(subparsers) -> None:
    p = subparsers.add_parser("evaluate", parents=[_registration_options(), _batch_options()],
                              help="register every pair of an ANHIR/BIRL table and score it with landmarks",
                              description="Writes <Case>.csv, times.csv, results.csv, summary.md and "
                                          "rtre_histogram.png to --out.")
    p.add_argument("pairs", metavar="PAIRS.csv")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=_run_evaluate)


def _add_train(subparsers) -> None:
    from .training import add_train_arguments, run_train

    p = subparsers.add_parser("train", help="train or fine-tune the affine network (unsupervised, NCC)",
                              description="Unsupervised training as the paper: pairs posed by the rotation search, "
                                          "random affine and stain augmentation, global negative NCC (plus the "
                                          "distance to a landmark-free target), Adam.")
    add_train_arguments(p)
    p.set_defaults(func=run_train)


def _run_register_batch(args: argparse.Namespace) -> int:
    from .evaluation import batch

    results = batch.run_batch(args.pairs, args.out, workers=args.workers, scheduler=args.scheduler,
                              resume=args.resume, require_landmarks=False, save_transform=True,
                              **_register_options(args))
    failed = int((results["error"] != "").sum())
    print(f"registered {len(results) - failed} of {len(results)} pairs into {args.out}"
          + (f"; {failed} failed (see results.csv)" if failed else ""))
    if results["rtre_median"].notna().any():
        print(format_summary(summarize(results)), end="")
    return 0


def _add_register_batch(subparsers) -> None:
    p = subparsers.add_parser("register-batch", parents=[_registration_options(), _batch_options()],
                              help="register every pair of a table (landmarks optional)",
                              description="Like evaluate, but landmarks are optional: writes <Case>.json "
                                          "(the transform), <Case>.csv where the pair has landmarks, times.csv, "
                                          "results.csv and summary.md to --out.")
    p.add_argument("pairs", metavar="PAIRS.csv")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=_run_register_batch)


def _run_warp(args: argparse.Namespace) -> int:
    import json
    import time


    try:
        saved = json.loads(Path(args.transform).read_text(encoding="utf-8"))
        matrix = np.asarray(saved["matrix"], float).reshape(3, 3)
    except (ValueError, KeyError, TypeError) as exc:
        raise HistoAffineError(f"not a transform file (needs a 3x3 'matrix'): {args.transform}") from exc
    moving_shape = image_shape(args.moving)
    if saved.get("moving_shape") and tuple(saved["moving_shape"][:2]) != moving_shape:
        raise HistoAffineError(f"MOVING is {moving_shape[0]}x{moving_shape[1]} px but the transform was computed "
                               f"for a {saved['moving_shape'][0]}x{saved['moving_shape'][1]} px moving image")
    if args.like:
        fixed_shape = image_shape(args.like)
        if saved.get("fixed_shape") and tuple(saved["fixed_shape"][:2]) != fixed_shape:
            raise HistoAffineError(f"FIXED is {fixed_shape[0]}x{fixed_shape[1]} px but the transform was computed "
                                   f"for a {saved['fixed_shape'][0]}x{saved['fixed_shape'][1]} px fixed image")
    elif saved.get("fixed_shape"):
        fixed_shape = tuple(int(v) for v in saved["fixed_shape"][:2])
    else:
        raise HistoAffineError("the transform file has no fixed_shape: give --like FIXED")
    marks = list(np.linspace(0.1, 1.0, 10))

    def report(fraction: float) -> None:
        while marks and fraction >= marks[0] - 1e-9:
            print(f"[{marks.pop(0):4.0%}] warping", file=sys.stderr, flush=True)

    start = time.perf_counter()
    compression = None if args.compression == "none" else args.compression
    shapes = warp_to_ome_tiff(args.moving, matrix, fixed_shape, args.out, tile=args.tile,
                                     compression=compression, quality=args.quality, background=args.background,
                                     progress=report)
    seconds = time.perf_counter() - start
    print(f"wrote {args.out}: {fixed_shape[0]}x{fixed_shape[1]} px, {len(shapes)} levels, {seconds:.1f} s "
          f"({fixed_shape[0] * fixed_shape[1] / 1e6 / seconds:.1f} MPx/s)")
    return 0


def _add_warp(subparsers) -> None:
    p = subparsers.add_parser("warp", help="apply a transform to a full-resolution slide, writing a pyramidal OME-TIFF",
                              description="Warp MOVING at full resolution with TRANSFORM.json (from register or "
                                          "register-batch) onto the grid of FIXED, tile by tile, and write a tiled, "
                                          "pyramidal OME-TIFF that slide viewers and napari open.")
    p.add_argument("moving", metavar="MOVING")
    p.add_argument("transform", metavar="TRANSFORM.json")
    p.add_argument("--like", metavar="FIXED", help="image whose geometry the output takes "
                                                   "(default: the transform's fixed_shape)")
    p.add_argument("--out", required=True, metavar="OUT.ome.tif")
    p.add_argument("--compression", choices=("auto", "jpeg", "zlib", "lzw", "none"), default="auto",
                   help="tile compression (default: JPEG for 8-bit gray/RGB, zlib otherwise)")
    p.add_argument("--quality", type=_positive_int, default=90, metavar="Q", help="JPEG quality (default 90)")
    p.add_argument("--tile", type=_positive_int, default=1024, metavar="N",
                   help="width in pixels of the blocks warped at a time (default 1024)")
    p.add_argument("--background", type=_background, default="auto", metavar="auto|V|R,G,B",
                   help="fill where the moving slide has no pixels: auto (default) is the slide's own background "
                        "colour, white on a bright-field slide; or a grey value, or one value per channel")
    p.set_defaults(func=_run_warp)


def _background(text: str):
    """``auto`` or numbers separated by commas (one grey value, or one per channel)."""
    if text == "auto":
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, a number or R,G,B, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _run_register_series(args: argparse.Namespace) -> int:
    from .evaluation.series import register_series

    summary = register_series(args.reference, args.moving, args.out, chain=args.chain, landmarks_dir=args.landmarks_dir,
                              warp=args.warp, workers=args.workers, scheduler=args.scheduler, resume=args.resume,
                              **_register_options(args))
    failed = summary[summary["error"] != ""]
    flagged = summary[summary["flagged"].fillna(False).astype(bool)]
    print(f"registered {len(summary) - len(failed)} of {len(summary)} sections onto {Path(args.reference).name}"
          + (f"; failed: {', '.join(failed['section'])}" if len(failed) else "")
          + (f"; flagged, check by eye: {', '.join(flagged['section'])}" if len(flagged) else "")
          + f" (see {Path(args.out) / 'summary.csv'})")
    if summary["rtre_median"].notna().any():
        print("rTRE median per section: " + ", ".join(f"{s} {r:.4f}" for s, r in
                                                       summary[["section", "rtre_median"]].dropna().itertuples(index=False)))
    return 0


def _add_register_series(subparsers) -> None:
    p = subparsers.add_parser("register-series", parents=[_registration_options(), _batch_options()],
                              help="register every section of a serial-section series onto one reference",
                              description="Register each MOVING section onto REFERENCE (or, with --chain, onto its "
                                          "neighbour toward the reference, composing the transforms); writes "
                                          "<section>/transform.json and summary.csv to --out, and goes on past a "
                                          "section that fails.")
    p.add_argument("reference", metavar="REFERENCE")
    p.add_argument("moving", metavar="MOVING", nargs="+")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--chain", action="store_true",
                   help="register each section onto the one before it (the first onto the reference) and compose")
    p.add_argument("--landmarks-dir", metavar="D",
                   help="folder of ANHIR landmark files named <section>.csv: rTRE against the reference's")
    p.add_argument("--warp", action="store_true",
                   help="also write <section>/warped.ome.tif: the section at full resolution on the reference's grid")
    p.set_defaults(func=_run_register_series)


def build_parser() -> argparse.ArgumentParser:
    """The ``histoaffine`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="histoaffine", description="Affine registration of histology sections.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_register, _add_evaluate, _add_train, _add_register_batch, _add_register_series, _add_warp,
                _add_demo):
        add(subparsers)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``histoaffine`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (HistoAffineError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"histoaffine: error: {message}", file=sys.stderr)
        return 2
