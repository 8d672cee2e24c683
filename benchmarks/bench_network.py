"""Forward-pass timing of the shipped AffineNet on CPU (median of 20 after warm-up).

The first size is the size the network works at (its input long side, 4:3); the others, two and
three times that, show how the time grows with the patch grid. Usage: python benchmarks/bench_network.py [--threads 1] [--repeats 20]
"""
import argparse
import statistics
import time

import torch

from napari_histoaffine.registration.network import AffineNet, count_parameters
from napari_histoaffine.registration.weights import load_default_model


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_default_model() or AffineNet().eval()
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, parameters={count_parameters(model):,}")
    print("| working size (W×H) | patch grid | median forward [ms] | min [ms] |")
    print("|---|---|---|---|")
    ps, side = model.config.patch_size, model.config.input_long_side
    for w, h in [(k * side, k * side * 3 // 4) for k in (1, 2, 3)]:
        moving, fixed = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)
        times = []
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(moving, fixed)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(moving, fixed)
                times.append((time.perf_counter() - t0) * 1000)
        grid = f"{-(-h // ps)}×{-(-w // ps)}"
        print(f"| {w}×{h} | {grid} | {statistics.median(times):.1f} | {min(times):.1f} |")


if __name__ == "__main__":
    main()
