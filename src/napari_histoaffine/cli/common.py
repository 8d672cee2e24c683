"""What the subcommands share: argument types, the registration options and the progress report."""
from __future__ import annotations

import argparse
import sys

from ..progress import Progress
from ..registration.options import DEFAULT_WORKING_SIZE, RegistrationOptions


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value

def registration_arguments() -> argparse.ArgumentParser:
    """Options shared by every subcommand that registers."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("registration")
    group.add_argument("--model", default="default", metavar="default|none|PATH",
                       help="network weights: the shipped default, none (pose search and refinement only) or a file")
    group.add_argument("--no-refine", action="store_true", help="skip the intensity refinement")
    group.add_argument("--no-mirror", action="store_true", help="do not try mirrored poses")
    group.add_argument("--working-size", type=positive_int, default=DEFAULT_WORKING_SIZE, metavar="N",
                       help=f"long side of the working images in pixels (default {DEFAULT_WORKING_SIZE})")
    return parent


def registration_options(args: argparse.Namespace) -> RegistrationOptions:
    """The :class:`RegistrationOptions` the parsed registration arguments ask for."""
    return RegistrationOptions(model=None if args.model.lower() == "none" else args.model, refine=not args.no_refine,
                               search_mirror=not args.no_mirror, working_size=args.working_size)


class _Report:
    """Progress lines on stderr: one per whole percent or new stage (a slide warp yields thousands of
    items); on a terminal each line replaces the last until the work is done."""

    def __init__(self):
        self.last = ("", -1)

    def __call__(self, progress: Progress) -> None:
        key = (progress.stage, int(progress.fraction * 100))
        if key == self.last:
            return
        self.last = key
        line = f"[{progress.fraction:4.0%}] {progress.message}"
        if sys.stderr.isatty():
            print(f"\r\033[K{line}", end="\n" if progress.fraction >= 1 else "", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)


report = _Report()
