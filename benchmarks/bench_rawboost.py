"""RawBoost throughput: utterances per second for each algorithm, batch size and thread count.

Usage: python benchmarks/bench_rawboost.py [--time 64600] [--batches 1 8 32] [--algos 0 1 ... 8]
       [--repeats 5] [--min-seconds 0.3]

Each cell is the best of `--repeats` timed runs (each run repeats the call until it has lasted
`--min-seconds`): on a shared machine the best run is the least disturbed one. Two tables: wall
clock (what a training loop sees) and, for one thread, process CPU time (robust to other jobs
taking turns on the cores, so comparable across busy and quiet moments; it still includes cache
disturbance). The load average is printed so a reader can judge the wall-clock numbers.
Reference on this hardware (published NumPy/SciPy code, one utterance at a time, one core):
algo 1: 25/s, 2: 809/s, 3: 129/s, 4: 17.7/s, 5: 21/s, 8: 19/s.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from dpda.augment import RawBoost

PUBLISHED = {1: 25.0, 2: 809.0, 3: 129.0, 4: 17.7, 5: 21.0, 8: 19.0}


def measure(rb: RawBoost, x: torch.Tensor, repeats: int, min_seconds: float) -> tuple[float, float]:
    """Best (wall, cpu) utterances per second over `repeats` runs."""
    gen = torch.Generator().manual_seed(0)
    rb(x, gen)  # warm-up: allocator, FFT plans
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        calls, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
        while True:
            rb(x, gen)
            calls += 1
            wall = time.perf_counter() - wall0
            if wall >= min_seconds:
                break
        best_wall = min(best_wall, wall / calls)
        best_cpu = min(best_cpu, (time.process_time() - cpu0) / calls)
    return x.shape[0] / best_wall, x.shape[0] / best_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", type=int, default=64600, help="samples per utterance")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--algos", type=int, nargs="+", default=list(range(9)))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-seconds", type=float, default=0.3)
    args = ap.parse_args()

    all_threads = torch.get_num_threads()
    thread_counts = [1] if all_threads == 1 else [1, all_threads]
    gen = torch.Generator().manual_seed(1)
    inputs = {b: 0.3 * torch.rand(b, args.time, generator=gen) - 0.15 for b in args.batches}
    cols = [(t, b) for t in thread_counts for b in args.batches]

    load_before = os.getloadavg()[0]
    wall_rows, cpu_rows = [], []
    for algo in args.algos:
        rb = RawBoost(algo)
        wall_cells, cpu_cells = [], []
        for threads, batch in cols:
            torch.set_num_threads(threads)
            wall, cpu = measure(rb, inputs[batch], args.repeats, args.min_seconds)
            wall_cells.append(wall)
            if threads == 1:
                cpu_cells.append(cpu)
        wall_rows.append((algo, wall_cells))
        cpu_rows.append((algo, cpu_cells))
    torch.set_num_threads(all_threads)
    load_after = os.getloadavg()[0]

    print(f"RawBoost utterances/s, {args.time} samples per utterance, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, best of {args.repeats}; load average {load_before:.1f} -> {load_after:.1f}")
    _table("wall clock", [f"{t}thr b={b}" for t, b in cols], wall_rows)
    _table("CPU time, 1 thread", [f"1thr b={b}" for b in args.batches], cpu_rows)


def _table(title: str, names: list[str], rows: list[tuple[int, list[float]]]) -> None:
    header = f"{'algo':>4} " + " ".join(f"{n:>12}" for n in names) + f" {'published 1thr':>15}"
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for algo, cells in rows:
        ref = PUBLISHED.get(algo)
        print(f"{algo:>4} " + " ".join(f"{c:12.1f}" for c in cells) + f" {ref if ref else '-':>15}")


if __name__ == "__main__":
    main()
