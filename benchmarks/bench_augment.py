"""Augmentation pipeline throughput: utterances per second per transform, one CPU thread.

Usage: PYTHONPATH=platform:analysis python benchmarks/bench_augment.py [--time 64000] [--batch 8]
       [--repeats 3] [--min-seconds 0.3] [--bank-files 10000] [--rss-batches 300] [--work DIR]

Each row is one transform as a one-step pipeline with p = 1 (draw + apply, as the trainer calls
it), on `--batch` utterances of `--time` samples (default 4 s at 16 kHz); loader transforms (g722,
mp3, opus) run on the same batch one utterance at a time, as a loader worker would. Each cell is
the best of `--repeats` runs (each repeats the call for `--min-seconds`), in process CPU time, so
other jobs on a shared machine disturb it little.

Banked transforms (noise, reverb, and the MUSAN + RIR (+ RawBoost) pipelines of
configs/published_musan_rir*.yaml) read offline banks built here by `dpda banks` (16 kHz, 2-6 s
files); their time includes reading the drawn frames (soundfile seeks, page cache warm), which is
what a loader worker or the trainer pays. Then two more tables:
- the pipeline's cost per demo dual step (configs/demo.yaml: tiny LFCC-LCNN, batch 16, 2-s crops,
  PCGrad): the step with the augmented batch given vs the step that augments its batch first;
- RSS while sampling `--rss-batches` demo batches through noise + reverb from a bank of
  `--bank-files` generated 0.25-s files (indexed and checked first): memory stays the batch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
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


def banked_cases(noise: str, rirs: str) -> dict[str, dict]:
    """The bank transforms and the paper's pipelines, on the given bank specs."""
    musan = {"noise": {"bank": noise}}  # Kaldi's categories: noise, music, babble of 3-7
    rir = {"reverb": {"bank": rirs}}
    musan_rir = {"one_of": {"steps": [rir, musan]}}
    return {
        "noise (Kaldi MUSAN categories)": musan,
        "noise babble only (3-7 speakers)": {"noise": {"bank": noise, "categories": {"speech": {"snr": [13, 20], "count": [3, 7]}}}},
        "reverb (small + medium rooms)": rir,
        "MUSAN + RIR (one_of)": musan_rir,
        "MUSAN + RIR + RawBoost algo 4": {"chain": {"steps": [musan_rir, {"rawboost": {"algo": 4}}]}},
    }


def rss_mb() -> float:
    """This process's resident set (Linux /proc), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def step_cost(pipeline: Pipeline, repeats: int, min_seconds: float) -> tuple[float, float, float]:
    """(ms per demo dual step with the augmented batch given, ms with the pipeline inside, ms of
    the pipeline alone on the same batch), CPU time. The share is taken from the pipeline alone:
    the difference of two step timings is within their noise on a shared machine."""
    from dpda.align import make_aligner
    from dpda.models import build_model
    from dpda.train.step import DualPathStep

    model = build_model("lcnn", "tiny", seed=0).train()
    loss = torch.nn.CrossEntropyLoss(weight=torch.tensor([0.1, 0.9]))
    step = DualPathStep(model, loss, torch.optim.Adam(model.parameters(), lr=3e-3), make_aligner("pcgrad"))
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(16, 32_000, generator=gen)
    y = torch.arange(16) % 2
    aug, _ = pipeline.augment(x, gen)

    def best_ms(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            start, calls = time.process_time(), 0
            while time.process_time() - start < min_seconds or calls == 0:
                fn()
                calls += 1
            times.append((time.process_time() - start) / calls * 1e3)
        return min(times)

    return (best_ms(lambda: step(x, aug, y)), best_ms(lambda: step(x, pipeline.augment(x, gen)[0], y)),
            best_ms(lambda: pipeline.augment(x, gen)))


def tiny_bank(root: Path, files: int) -> str:
    """A `csv:` bank of `files` 0.25-s noise files (the RSS test's 10,000-file bank)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    lines = ["path,category"]
    for i in range(files):
        name = f"n{i:05d}.wav"
        sf.write(root / name, (0.1 * rng.standard_normal(4000)).astype(np.float32), 16_000, subtype="PCM_16")
        lines.append(f"{name},noise")
    (root / "bank.csv").write_text("\n".join(lines) + "\n")
    return f"csv:{root / 'bank.csv'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", type=int, default=64_000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=0.3)
    parser.add_argument("--bank-files", type=int, default=10_000)
    parser.add_argument("--rss-batches", type=int, default=300)
    parser.add_argument("--work", type=Path, default=None, help="where to build the banks (default: a temp dir)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_augment_"))
    os.environ.setdefault("DPDA_CACHE_DIR", str(work / "cache"))
    from dpda.data.bank_builder import write_banks
    from dpda.data.bank_config import BankSizes

    banks = write_banks(work / "banks", BankSizes(seed=0))
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {os.cpu_count()} CPUs")
    x = 0.1 * torch.randn(args.batch, args.time, generator=torch.Generator().manual_seed(0))
    print(f"| transform | utterances/s, 1 CPU thread ({args.time} samples, batch {args.batch}) |\n|---|---|")
    for name, step in CASES.items():
        rate = measure(Pipeline(parse_pipeline({"steps": [step]})), x, args.repeats, args.min_seconds)
        print(f"| {name} | {rate:,.0f} |", flush=True)
    for name, step in banked_cases(banks["noise"], banks["rirs"]).items():
        rate = measure(Pipeline(parse_pipeline({"steps": [step]})), x, args.repeats, args.min_seconds)
        print(f"| {name} | {rate:,.0f} |", flush=True)

    print("\n| augmented path (demo: batch 16 x 32,000 samples) | dual step, batch given (ms) | step + pipeline (ms) | pipeline alone (ms) | pipeline share |\n|---|---|---|---|---|")
    cases = banked_cases(banks["noise"], banks["rirs"])
    for name in ("rawboost algo 4", "MUSAN + RIR (one_of)", "MUSAN + RIR + RawBoost algo 4"):
        step = CASES.get(name) or cases[name]
        plain, augmented, alone = step_cost(Pipeline(parse_pipeline({"steps": [step]})), args.repeats, max(args.min_seconds, 1.0))
        print(f"| {name} | {plain:.0f} | {augmented:.0f} | {alone:.1f} | {alone / (plain + alone):.1%} |", flush=True)

    spec = tiny_bank(work / "many", args.bank_files)
    start = rss_mb()
    pipeline = Pipeline(parse_pipeline({"steps": [{"reverb": {"bank": banks["rirs"]}},
                                                  {"noise": {"bank": spec, "categories": {"noise": {}}}}]}))
    pipeline.prepare()  # index + check the 10,000 files (decoded once, verdict cached)
    opened = rss_mb()
    gen = torch.Generator().manual_seed(0)
    x = 0.1 * torch.randn(16, 32_000, generator=gen)
    marks = {}
    for i in range(1, args.rss_batches + 1):
        pipeline.augment(x, gen)
        if i in (10, args.rss_batches // 2, args.rss_batches):
            marks[i] = rss_mb()
    print(f"\n| RSS, {args.bank_files:,}-file bank, batches of 16 x 32,000 | MB |\n|---|---|")
    print(f"| before opening the bank | {start:.0f} |\n| bank indexed and checked | {opened:.0f} |")
    for i, mb in marks.items():
        print(f"| after {i} batches | {mb:.0f} |")
    print(f"| growth from batch 10 to {args.rss_batches} | {marks[args.rss_batches] - marks[10]:+.0f} |")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
