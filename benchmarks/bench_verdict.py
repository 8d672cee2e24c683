"""How well the landmark-free verdict separates right from wrong registrations.

Reads the ``results.csv`` that ``histoaffine evaluate`` wrote for each folder (a result is wrong
when its median rTRE exceeds 0.02, the ANHIR success limit) and prints, per folder, the success
rate, the share of wrong results that were flagged, the share of right ones that were flagged and
the ROC AUC of ``confidence`` (the chance that a random right result gets a higher confidence than
a random wrong one).

usage: python benchmarks/bench_verdict.py RESULTS_DIR [RESULTS_DIR ...]
"""
import sys
from pathlib import Path

import pandas as pd
from scipy.stats import mannwhitneyu


def main(argv=None) -> int:
    print("| results | cases | success % | wrong results flagged | right results flagged | AUROC |")
    print("|---|---:|---:|---:|---:|---:|")
    for folder in (argv or sys.argv[1:]):
        results = pd.read_csv(Path(folder) / "results.csv")
        right = results["success"].astype(bool)
        flagged = results["flagged"].astype(bool)
        wrong = ~right
        auroc = (mannwhitneyu(results.confidence[right], results.confidence[wrong]).statistic / (right.sum() * wrong.sum())
                 if right.any() and wrong.any() else float("nan"))
        print(f"| {folder} | {len(results)} | {100 * right.mean():.1f} | {flagged[wrong].sum()}/{wrong.sum()} "
              f"| {flagged[right].sum()}/{right.sum()} | {auroc:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
