"""Time of the alignment rules for P path gradients: `path_coeffs` per call, on CPU.

Usage: PYTHONPATH=platform python benchmarks/bench_align_k.py [--units 1 400] [--paths 2 3 4 5]
       [--rules none pcgrad gradvac cagrad mgda] [--repeats 5] [--min-seconds 0.2] [--threads 1]

`path_coeffs` works on the Gram matrices alone (U units x P x P, float64): U = 1 is granularity
`model`, U = 400 about a model's parameter tensors at granularity `layer`. Each cell is the best
of `--repeats` runs (each repeats the call until it lasted `--min-seconds`), in microseconds per
call, process CPU time on `--threads` threads (robust to other jobs on a shared machine). The
load average is printed so a reader can judge. P = 2 is the two-path closed forms; P > 2
PCGrad/GradVac take P sequential batched steps, MGDA/CAGrad one batched solve of 2^P - 1 faces.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from dpda.align.multipath import path_coeffs
from dpda.align.registry import get_rule


def gram(units: int, p: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(units, p, 64, generator=gen, dtype=torch.float64)
    g[:, 1:] -= 0.7 * g[:, :1]  # some conflicts
    return g @ g.transpose(1, 2)


def measure(rule: str, grams: torch.Tensor, repeats: int, min_seconds: float) -> float:
    """Best CPU microseconds per call over `repeats` runs."""
    options = get_rule(rule).parse_options({})
    state: dict = {}
    gen = torch.Generator().manual_seed(0)
    path_coeffs(rule, grams, options=options, state=state, generator=gen)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - wall0 < min_seconds:
            path_coeffs(rule, grams, options=options, state=state, generator=gen)
            calls += 1
        best = min(best, (time.process_time() - cpu0) / calls)
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, nargs="+", default=[1, 400])
    ap.add_argument("--paths", type=int, nargs="+", default=[2, 3, 4, 5])
    ap.add_argument("--rules", nargs="+", default=["none", "pcgrad", "gradvac", "cagrad", "mgda"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"path_coeffs, CPU us per call ({args.threads} thread(s); load average "
          f"{os.getloadavg()[0]:.1f}, torch {torch.__version__})")
    header = f"{'rule':8} {'U':>4} " + " ".join(f"{'P=' + str(p):>9}" for p in args.paths)
    print(header)
    print("-" * len(header))
    for rule in args.rules:
        for units in args.units:
            cells = [measure(rule, gram(units, p), args.repeats, args.min_seconds) for p in args.paths]
            print(f"{rule:8} {units:>4} " + " ".join(f"{c:>9.0f}" for c in cells))


if __name__ == "__main__":
    main()
