"""Augmentation pipeline throughput: utterances per second per transform, one CPU thread.

Usage: PYTHONPATH=platform:analysis python benchmarks/bench_augment.py [--time 64000] [--batch 8]
       [--repeats 3] [--min-seconds 0.3]

Each row is one transform as a one-step pipeline with p = 1 (draw + apply, as the trainer calls
it), on `--batch` utterances of `--time` samples (default 4 s at 16 kHz); loader transforms (g722,
mp3, opus) run on the same batch one utterance at a time, as a loader worker would. Each cell is
the best of `--repeats` runs (each repeats the call for `--min-seconds`), in process CPU time, so
other jobs on a shared machine disturb it little. Banked transforms (noise, reverb) are issue 30's
other half.
"""

from __future__ import annotations

import argparse
import time

import torch

from dpda.augment.pipeline import Pipeline
from dpda.augment.spec import parse_pipeline

CASES = {
    "rawboost algo 4": {"rawboost": {"algo": 4}},
    "gain": {"gain": {}},
    "clip": {"clip": {}},
    "band_drop": {"band_drop": {}},
    "speed (0.9/1.0/1.1)": {"speed": {}},
    "codec mulaw": {"codec": {"kind": "mulaw"}},
    "codec alaw": {"codec": {"kind": "alaw"}},
    "codec g722 (loader)": {"codec": {"kind": "g722"}},
    "codec mp3 (loader)": {"codec": {"kind": "mp3"}},
    "codec opus (loader)": {"codec": {"kind": "opus"}},
    "one_of(alaw, speed, band_drop) + gain": {"chain": {"steps": [
        {"one_of": {"steps": [{"codec": {"kind": "alaw"}}, {"speed": {}}, {"band_drop": {}}]}}, {"gain": {}}]}},
}


def measure(pipeline: Pipeline, x: torch.Tensor, repeats: int, min_seconds: float) -> float:
    """Best utterances per CPU second."""
    gen = torch.Generator().manual_seed(0)
    pipeline.augment(x, gen)  # warm-up: tables, FFT plans, allocator
    best = 0.0
    for _ in range(repeats):
        start, calls = time.process_time(), 0
        while time.process_time() - start < min_seconds or calls == 0:
            pipeline.augment(x, gen)
            calls += 1
        best = max(best, calls * x.shape[0] / (time.process_time() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=int, default=64_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x = 0.1 * torch.randn(args.batch, args.time, generator=torch.Generator().manual_seed(0))
    print(f"| transform | utterances/s, 1 CPU thread ({args.time} samples, batch {args.batch}) |\n|---|---|")
    for name, step in CASES.items():
        rate = measure(Pipeline(parse_pipeline({"steps": [step]})), x, args.repeats, args.min_seconds)
        print(f"| {name} | {rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
