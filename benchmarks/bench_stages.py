"""Per-stage timing of the registration pipeline over every pair of a table (images already decoded).

Usage: python benchmarks/bench_stages.py [PAIRS.csv] [--model default|none|PATH] [--no-refine] [--threads N]
Prints a markdown table of the median and p90 milliseconds of each stage and of the total.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from napari_histoaffine.files.images import read_pair
from napari_histoaffine.files.tables import read_pairs_table
from napari_histoaffine.registration.options import DEFAULT_WORKING_SIZE, RegistrationOptions
from napari_histoaffine.registration.pipeline import register

DEFAULT_PAIRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench-lung-lesion-3" / "pairs.csv"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs", nargs="?", default=str(DEFAULT_PAIRS))
    ap.add_argument("--model", default="default")
    ap.add_argument("--no-refine", action="store_true")
    ap.add_argument("--working-size", type=int, default=DEFAULT_WORKING_SIZE)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    options = RegistrationOptions(model=None if args.model == "none" else args.model, refine=not args.no_refine,
                                  working_size=args.working_size)
    timings = [register(*read_pair(p.moving_image, p.fixed_image, options.working_size), options).timings
               for p in tqdm(read_pairs_table(args.pairs), unit="pair")]
    stages = list(dict.fromkeys(s for t in timings for s in t))
    columns = {s: [t[s] * 1000 for t in timings if s in t] for s in stages}
    columns["total"] = [sum(t.values()) * 1000 for t in timings]
    print(f"{len(timings)} pairs of {args.pairs}; torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"working size {args.working_size}, model {args.model}, refine {not args.no_refine}")
    print("| stage | median [ms] | p90 [ms] |\n|---|---|---|")
    for stage, ms in columns.items():
        print(f"| {stage} | {np.median(ms):.0f} | {np.percentile(ms, 90):.0f} |")


if __name__ == "__main__":
    main()
