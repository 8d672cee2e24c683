"""Subcommand ``transfer-annotations``: GeoJSON annotations (QuPath) of one section mapped onto another."""
from __future__ import annotations

import argparse
from pathlib import Path


def _run_transfer(args: argparse.Namespace) -> int:
    from ..files.geojson import transfer_file
    from ..files.transform_files import read_transform_chain

    matrix = read_transform_chain([(args.transform, args.inverse), *(args.then or [])])
    count = transfer_file(args.input, args.out, matrix)
    direction = "fixed -> moving" if args.inverse else "moving -> fixed"
    print(f"wrote {args.out}: {count} geometries of {Path(args.input).name} mapped {direction}"
          + (f" and through {len(args.then)} more transform(s)" if args.then else ""))
    return 0


def add_transfer_annotations(subparsers) -> None:
    p = subparsers.add_parser(
        "transfer-annotations", help="map GeoJSON annotations (QuPath) through a saved transform",
        description="Map the annotations of IN.geojson (full-resolution pixels of the moving section, QuPath's "
                    "convention) into the fixed section's pixels with TRANSFORM (our JSON, elastix "
                    "TransformParameters or ITK .tfm), or back with --inverse. Properties (names, classifications, "
                    "measurements) are kept; only coordinates change.")
    p.add_argument("transform", metavar="TRANSFORM.json")
    p.add_argument("input", metavar="IN.geojson")
    p.add_argument("--out", required=True, metavar="OUT.geojson")
    p.add_argument("--inverse", action="store_true", help="map from the fixed section to the moving one")
    p.add_argument("--then", action="append", dest="then", type=lambda path: (path, False), metavar="T2.json",
                   help="then map through another transform (repeatable; e.g. a series' next step)")
    p.add_argument("--then-inverse", action="append", dest="then", type=lambda path: (path, True),
                   metavar="T2.json", help="then map back through another transform's inverse (repeatable; "
                                           "section A → reference → section B of a series)")
    p.set_defaults(func=_run_transfer)
