"""RawBoost throughput: utterances per second for each algorithm, batch size and thread count.

Usage: python benchmarks/bench_rawboost.py [--time 64600] [--batches 1 8 32] [--algos 0 1 ... 8]
       [--repeats 5] [--min-seconds 0.3] [--floor]

Each cell is the best of `--repeats` timed runs (each run repeats the call until it has lasted
`--min-seconds`): on a shared machine the best run is the least disturbed one. Two tables: wall
clock (what a training loop sees) and, for one thread, process CPU time (robust to other jobs
taking turns on the cores, so comparable across busy and quiet moments; it still includes cache
disturbance). The load average is printed so a reader can judge the wall-clock numbers.
Reference on this hardware (published NumPy/SciPy code, one utterance at a time, one core):
algo 1: 25/s, 2: 809/s, 3: 129/s, 4: 17.7/s, 5: 21/s, 8: 19/s.

`--floor` also times, on one thread, the library calls algo 4 cannot avoid, alone and with hot
caches: its FFT calls with the module's block and chunk geometry (N_f + 1 forward and one inverse
for LnL, one of each for SSI), the Gaussian noise of SSI, and one elementwise pass over the batch
(the unit of everything else). Their sum against the 1 / rate budget shows what is left for the
rest of the work.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from dpda.augment import RawBoost
from dpda.augment import functional as Fn
from dpda.augment import rawboost as rawboost_module

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
    ap.add_argument("--floor", action="store_true", help="also time algo 4's unavoidable library calls")
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
    if args.floor:
        torch.set_num_threads(1)
        _floor(args.time, max(args.batches), args.repeats)
        torch.set_num_threads(all_threads)


def _best(fn, repeats: int, calls: int = 5) -> float:
    """Best per-call process CPU seconds over `repeats` runs of `calls` calls (after a warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        cpu0 = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - cpu0) / calls)
    return best


def _floor(samples: int, batch: int, repeats: int) -> None:
    """Per-utterance CPU time of algo 4's unavoidable library calls, alone, on hot buffers."""
    rb = RawBoost(4)
    p = rb.params
    taps = rb.draw_lnl(1).banks.shape[-1]  # the banks the module filters with
    block = Fn._block_size(samples, taps)
    rows = max(1, rawboost_module.CPU_CHUNK_SAMPLES // samples)  # utterances per chunk
    frames = Fn._frames(torch.randn(rows, samples), torch.float32, taps, block)
    n_blocks = frames.shape[-2]
    spectra = torch.fft.rfft(frames)
    forward, inverse = p.N_f + 1, 2  # LnL: x and its powers, SSI: the noise; one inverse each

    def ffts() -> None:
        for _ in range(forward):
            torch.fft.rfft(frames)
        for _ in range(inverse):
            torch.fft.irfft(spectra, n=block)

    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(batch, samples)
    parts = {
        f"FFT calls ({forward} forward + {inverse} inverse, {rows} utt x {n_blocks} x {block})":
            _best(ffts, repeats) / rows,
        "Gaussian noise (torch.randn)": _best(lambda: torch.randn(batch, samples, generator=gen), repeats) / batch,
        "one elementwise pass (mul_)": _best(lambda: wave.mul_(1.0), repeats) / batch,
    }
    budget = 1 / 350
    print(f"\nalgo 4 floor, 1 thread, ms per utterance ({samples} samples; goal 350/s = {budget * 1e3:.2f} ms)")
    for name, seconds in parts.items():
        print(f"  {name:72s} {seconds * 1e3:7.3f}")
    unavoidable = sum(list(parts.values())[:2])
    print(f"  {'FFT + noise':72s} {unavoidable * 1e3:7.3f}")
    print(f"  {'left for design, ISD, framing and every other pass':72s} {(budget - unavoidable) * 1e3:7.3f}")


def _table(title: str, names: list[str], rows: list[tuple[int, list[float]]]) -> None:
    header = f"{'algo':>4} " + " ".join(f"{n:>12}" for n in names) + f" {'published 1thr':>15}"
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for algo, cells in rows:
        ref = PUBLISHED.get(algo)
        print(f"{algo:>4} " + " ".join(f"{c:12.1f}" for c in cells) + f" {ref if ref else '-':>15}")


if __name__ == "__main__":
    main()
