"""Subcommands on one pair: ``register``, ``demo`` (the built-in sample) and ``warp`` (a slide at full resolution)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import HistoAffineError, UnusableImageError
from .common import positive_int, registration_arguments, registration_options, report

PREVIEW_MAX = 1024  # long side of warped.png for whole-slide images; `histoaffine warp` writes full resolution


def _to_uint8(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Warped float pixels back to 8 bits (integer inputs scaled from their range, floats from [0, 1]); NaN and inf
    pixels are background, as the registration counts them: the brightest finite value."""
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    finite = np.isfinite(image)
    if not finite.all():
        image = np.where(finite, image, image[finite].max(initial=top))
    return np.clip(np.round(image * (255.0 / top)), 0, 255).astype(np.uint8)


def _run_register(args: argparse.Namespace) -> int:
    from .. import transforms
    from ..evaluation import metrics
    from ..files.atomic import write_json
    from ..files.images import read_pair, write_image
    from ..files.pixel_size import pixel_size_um
    from ..files.tables import read_landmarks, write_landmarks
    from ..registration.pipeline import register

    if args.fixed_landmarks and not args.moving_landmarks:
        raise HistoAffineError("--fixed-landmarks needs --moving-landmarks")
    source = read_landmarks(args.moving_landmarks) if args.moving_landmarks else None
    target = read_landmarks(args.fixed_landmarks) if args.fixed_landmarks else None
    moving, fixed = read_pair(args.moving, args.fixed, args.working_size)
    diagonal = metrics.image_diagonal(fixed.full_shape)
    if target is not None:
        metrics.landmark_stats(source, target, diagonal)  # different lengths fail before the registration
    try:
        result = register(moving, fixed, registration_options(args), on_progress=report)
    except UnusableImageError as exc:  # the one line names the file
        raise exc.named(args.moving if exc.role == "moving" else args.fixed) from None

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"moving_image": args.moving, "fixed_image": args.fixed,
             "moving_landmarks": args.moving_landmarks, "fixed_landmarks": args.fixed_landmarks}
    sizes = {"moving_pixel_size_um": pixel_size_um(args.moving), "fixed_pixel_size_um": pixel_size_um(args.fixed)}
    write_json(out / "transform.json", {**result.to_dict(), **{k: v and str(Path(v).resolve()) for k, v in paths.items()},
                                        **sizes})
    warped, dtype, note = _preview(args.moving, moving, result)
    write_image(out / "warped.png", _to_uint8(warped, dtype))

    flip = ", mirrored" if result.flipped else ""
    stages = ", ".join(f"{s} {t * 1000:.0f} ms" for s, t in result.timings.items())
    line = (f"registered in {result.seconds:.2f} s ({stages}); rotation {result.rotation_deg:.1f} deg{flip}; "
            f"{result.headline}" + ("" if result.verdict.flagged else f" - {result.verdict.reason}"))
    if source is not None:
        moved = transforms.apply_to_points(result.matrix, source)
        write_landmarks(out / "warped_landmarks.csv", moved)
        if target is not None:
            stats = metrics.landmark_stats(moved, target, diagonal, initial_xy=source)
            line += f"; rTRE median {stats.rtre_median:.4f} mean {stats.rtre_mean:.4f} max {stats.rtre_max:.4f}"
            if sizes["fixed_pixel_size_um"]:  # TRE in the fixed slide's µm
                tre_um = metrics.tre_um(moved, target, sizes["fixed_pixel_size_um"])
                line += f"; TRE median {np.median(tre_um):.2f} um max {tre_um.max():.2f} um"
    print(line + note)
    return 0


def _preview(moving_path, moving, result) -> tuple[np.ndarray, np.dtype, str]:
    """The moving image warped onto the fixed grid, reduced to PREVIEW_MAX px for slides (read from their pyramid)."""
    from .. import transforms
    from ..files.images import read_image

    scale = min(1.0, PREVIEW_MAX / max(result.fixed_shape))
    if scale == 1.0:
        full = moving if moving.level == 0 else read_image(moving_path)
        return transforms.warp_image(full.data, result.matrix, result.fixed_shape), full.data.dtype, ""
    shape = tuple(max(1, round(v * scale)) for v in result.fixed_shape)
    level = read_image(moving_path, max_long_side=int(np.ceil(max(moving.full_shape) * scale)))
    matrix = transforms.compose(level.to_full, result.matrix, transforms.resample_matrix(result.fixed_shape, shape))
    return (transforms.warp_image(level.data, matrix, shape), level.data.dtype,
            f"; warped.png is {shape[0]}x{shape[1]} px (full resolution: histoaffine warp)")


def add_register(subparsers) -> None:
    p = subparsers.add_parser("register", parents=[registration_arguments()],
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
    from ..files.images import write_image
    from ..files.tables import write_landmarks
    from ..sample import make_pair

    pair = make_pair()
    inputs = Path(args.out) / "sample"
    inputs.mkdir(parents=True, exist_ok=True)
    write_image(inputs / "moving.png", pair.moving)
    write_image(inputs / "fixed.png", pair.fixed)
    write_landmarks(inputs / "moving.csv", pair.moving_landmarks)
    write_landmarks(inputs / "fixed.csv", pair.fixed_landmarks)
    print(f"sample pair written to {inputs}", file=sys.stderr)
    register_args = registration_arguments().parse_args([])  # the default registration options
    register_args.moving, register_args.fixed = str(inputs / "moving.png"), str(inputs / "fixed.png")
    register_args.moving_landmarks, register_args.fixed_landmarks = str(inputs / "moving.csv"), str(inputs / "fixed.csv")
    register_args.out = str(Path(args.out) / "registered")
    return _run_register(register_args)


def add_demo(subparsers) -> None:
    p = subparsers.add_parser("demo", help="register the built-in sample pair (ihc.png, re-stained and warped)",
                              description="Writes the sample pair with its landmarks to OUT/sample, registers it "
                                          "into OUT/registered and prints the landmark error.")
    p.add_argument("--out", default="histoaffine-demo", metavar="DIR")
    p.set_defaults(func=_run_demo)


def _run_warp(args: argparse.Namespace) -> int:
    from ..files.pixel_size import pixel_size_um
    from ..files.tiles import image_shape
    from ..warp import warp_to_ome_tiff

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
    start = time.perf_counter()
    compression = None if args.compression == "none" else args.compression
    size = (pixel_size_um(args.like) if args.like else None) or saved.get("fixed_pixel_size_um")
    shapes = warp_to_ome_tiff(args.moving, matrix, fixed_shape, args.out, tile=args.tile, compression=compression,
                              quality=args.quality, background=args.background, on_progress=report,
                              pixel_size_um=size)
    seconds = time.perf_counter() - start
    print(f"wrote {args.out}: {fixed_shape[0]}x{fixed_shape[1]} px" + (f" of {size[0]:g} um" if size else "")
          + f", {len(shapes)} levels, {seconds:.1f} s ({fixed_shape[0] * fixed_shape[1] / 1e6 / seconds:.1f} MPx/s)")
    return 0


def add_warp(subparsers) -> None:
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
    p.add_argument("--quality", type=positive_int, default=90, metavar="Q", help="JPEG quality (default 90)")
    p.add_argument("--tile", type=positive_int, default=1024, metavar="N",
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
