"""Scoring speed with 2-D convolution weights in channels-last order (`inference_layout`, which
`dpda eval` and `dpda predict` use) against the default contiguous layout, and the largest logit
difference between the two.

    PYTHONPATH=platform:analysis python benchmarks/bench_inference_layout.py \\
        --models aasist:released aasist:released_l lcnn:full --batch 8 --length 64600

Random weights: the speed and the rounding do not depend on trained values. Seconds per file are
the median of --repeats timed batches after one warm-up, on whatever threads torch uses here.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dpda.models.registry import build_model
from dpda.train.inference import inference_layout


def seconds_per_file(model: torch.nn.Module, wave: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        model(wave[:1])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(wave)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / len(wave)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["aasist:released", "aasist:released_l", "lcnn:full", "rawnet2:full"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=64_600)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    wave = torch.randn(args.batch, args.length, generator=torch.Generator().manual_seed(0))
    print(f"threads {torch.get_num_threads()}, batch {args.batch} x {args.length} samples")
    print("| model | contiguous s/file | channels-last s/file | speed-up | max abs logit diff |")
    print("|---|---|---|---|---|")
    for spec in args.models:
        name, _, preset = spec.partition(":")
        model = build_model(name, preset or "full", seed=0).eval()
        with torch.inference_mode():
            before = model(wave)
        plain = seconds_per_file(model, wave, args.repeats)
        model = inference_layout(model)
        with torch.inference_mode():
            diff = float((model(wave) - before).abs().max())
        fast = seconds_per_file(model, wave, args.repeats)
        print(f"| {spec} | {plain:.3f} | {fast:.3f} | {plain / fast:.2f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
