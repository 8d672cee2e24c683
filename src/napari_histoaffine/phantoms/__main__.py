"""Command line: write a phantom dataset (ANHIR layout) for development, tests or training.

usage: python -m napari_histoaffine.phantoms OUT_DIR --specimens N [--seed S]
           [--families a,b,c | --part dev|final] [--stains-per-specimen K] [--long-side PX]
"""
from __future__ import annotations

import argparse
import sys
import time

from .dataset import write_dataset
from .families import FAMILIES, FAMILY_PARTS

PART_SEEDS = {"dev": 101, "final": 202}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_histoaffine.phantoms",
                                     description="Write synthetic histology specimens with exact landmarks "
                                                 "(images/, landmarks/, spec.json).")
    parser.add_argument("out_dir")
    parser.add_argument("--specimens", type=int, required=True)
    parser.add_argument("--seed", type=int, help="dataset seed (default: the part's, else 0)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--families", help=f"comma-separated pool, each specimen draws 1-3 ({', '.join(FAMILIES)})")
    choice.add_argument("--part", choices=sorted(FAMILY_PARTS), help="the families of a part: "
                        + "; ".join(f"{p}: {', '.join(f)}" for p, f in FAMILY_PARTS.items()))
    parser.add_argument("--stains-per-specimen", type=int, help="sections per specimen, each in its own stain "
                                                                "(default 4-5)")
    parser.add_argument("--long-side", type=int, help="image long side in px (default 560-1100, random)")
    args = parser.parse_args(argv)
    families = FAMILY_PARTS[args.part] if args.part else args.families.split(",") if args.families else None
    seed = args.seed if args.seed is not None else PART_SEEDS.get(args.part, 0)
    started = time.perf_counter()
    try:
        spec = write_dataset(args.out_dir, args.specimens, seed, families, args.stains_per_specimen, args.long_side)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {spec} ({args.specimens} specimens, seed {seed}) in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
