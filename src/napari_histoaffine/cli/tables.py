"""Subcommands on many pairs: ``evaluate`` and ``register-batch`` (tables of pairs), ``register-series``."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import positive_int, registration_arguments, registration_options, report


def batch_arguments() -> argparse.ArgumentParser:
    """Options shared by the subcommands that run a table of pairs."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("batch")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help="run pairs as tasks on a local dask cluster of N processes")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run pairs on a running dask.distributed cluster (its workers must see the same paths)")
    group.add_argument("--resume", action="store_true",
                       help="skip pairs that a previous run into --out finished (their row in results.csv "
                            "and their output file exist)")
    return parent


def _run_table(args: argparse.Namespace, mode):
    from ..evaluation.batch import run_batch

    return run_batch(args.pairs, args.out, registration_options(args), mode=mode, workers=args.workers,
                     scheduler=args.scheduler, resume=args.resume, on_progress=report)


def _run_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import BatchMode, format_summary, summarize

    print(format_summary(summarize(_run_table(args, BatchMode.EVALUATE))), end="")
    return 0


def add_evaluate(subparsers) -> None:
    p = subparsers.add_parser("evaluate", parents=[registration_arguments(), batch_arguments()],
                              help="register every pair of an ANHIR/BIRL table and score it with landmarks",
                              description="Writes <Case>.csv, times.csv, results.csv, summary.md and "
                                          "rtre_histogram.png to --out.")
    p.add_argument("pairs", metavar="PAIRS.csv")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=_run_evaluate)


def _run_register_batch(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import BatchMode, format_summary, summarize

    results = _run_table(args, BatchMode.REGISTER)
    failed = int((results["error"] != "").sum())
    print(f"registered {len(results) - failed} of {len(results)} pairs into {args.out}"
          + (f"; {failed} failed (see results.csv)" if failed else ""))
    if results["rtre_median"].notna().any():
        print(format_summary(summarize(results)), end="")
    return 0


def add_register_batch(subparsers) -> None:
    p = subparsers.add_parser("register-batch", parents=[registration_arguments(), batch_arguments()],
                              help="register every pair of a table (landmarks optional)",
                              description="Like evaluate, but landmarks are optional: writes <Case>.json "
                                          "(the transform), <Case>.csv where the pair has landmarks, times.csv, "
                                          "results.csv and summary.md to --out.")
    p.add_argument("pairs", metavar="PAIRS.csv")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=_run_register_batch)


def _run_register_series(args: argparse.Namespace) -> int:
    from ..evaluation.series import register_series

    summary = register_series(args.reference, args.moving, args.out, registration_options(args), chain=args.chain,
                              landmarks_dir=args.landmarks_dir, warp=args.warp, workers=args.workers,
                              scheduler=args.scheduler, resume=args.resume, on_progress=report)
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


def add_register_series(subparsers) -> None:
    p = subparsers.add_parser("register-series", parents=[registration_arguments(), batch_arguments()],
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
