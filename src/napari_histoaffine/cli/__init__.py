"""The ``histoaffine`` command line: each subcommand module adds its parsers; this one runs them.

Errors meant for users (:class:`HistoAffineError`, missing or unwritable files) end the program with
one line ``histoaffine: error: <message>`` on stderr and exit code 2. Progress goes to stderr. The
subcommand modules import the engine only when a command runs, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import HistoAffineError
from . import register, tables, train, transfer
from .common import report


def build_parser() -> argparse.ArgumentParser:
    """The ``histoaffine`` parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="histoaffine", description="Affine registration of histology sections.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (register.add_register, tables.add_evaluate, train.add_train, tables.add_register_batch,
                tables.add_register_series, register.add_warp, register.add_demo,
                transfer.add_transfer_annotations):
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


__all__ = ["build_parser", "main", "report"]
