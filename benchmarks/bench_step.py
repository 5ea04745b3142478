"""Step time and extra memory of the dual-path step vs. a plain DA step (CPU, AASIST-sized model).

Run: /work/venv/bin/python benchmarks/bench_step.py [--repeats 7] [--threads 1]

Time: every configuration does one optimizer step (Adam) on the same batch (8 utterances per
path of 16,000 samples); configurations are interleaved within each repeat (order rotated per
repeat) and the median over repeats is printed as a ratio to the plain DA step (one forward and
one backward over the concatenated 16-utterance batch). Two clocks: wall time, and the calling
thread's CPU time (``time.thread_time``; with --threads 1 all torch work runs on that thread, so
it is insensitive to other processes competing for the 2 cores). "align ms" is the alignment
alone (dots + rule + writing the update) on the model's flat gradients, median of 20 calls.

Memory: one extra step per configuration under ``torch.profiler`` with ``profile_memory=True``;
the CPU allocator's allocation/free events are replayed in time order. Columns:
- persistent/P: bytes the step keeps allocated between steps beyond parameters, ``.grad`` and
  optimizer state, over the parameter bytes (the original-path row of the (2, P) buffer);
- align/P: peak transient allocation inside the alignment phase (``dpda.align``: dots, rule,
  clip, writing the update into ``.grad``), over the parameter bytes;
- extra/P = persistent/P + align/P: peak gradient-handling memory beyond a plain step;
- step peak/P: peak allocation over the whole step (activations included) above the level at
  its start, minus the same for plain DA (negative: the dual step needs less, as each path's
  activations are half of the concatenated batch's).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from dpda.align import make_aligner
from dpda.train.step import DualPathStep, plain_da_step

SR = 16_000


class SincFrontEnd(nn.Module):
    """Fixed mel-spaced band-pass sinc filters (no trainable weights, as AASIST's front end)."""

    def __init__(self, n_filters: int = 32, kernel: int = 129):
        super().__init__()
        mel = torch.linspace(2595 * math.log10(1 + 30 / 700), 2595 * math.log10(1 + 7600 / 700), n_filters + 1)
        hz = 700 * (10 ** (mel / 2595) - 1)
        t = (torch.arange(kernel) - (kernel - 1) / 2) / SR
        lo, hi = hz[:-1, None], hz[1:, None]
        band = 2 * hi * torch.special.sinc(2 * hi * t) - 2 * lo * torch.special.sinc(2 * lo * t)
        band = band * torch.hamming_window(kernel, periodic=False)
        self.register_buffer("filters", (band / band.abs().sum(1, keepdim=True)).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x.unsqueeze(1), self.filters, stride=2, padding=self.filters.shape[-1] // 2).abs()


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm1d(cin), nn.Conv1d(cin, cout, 3, padding=1)
        self.bn2, self.conv2 = nn.BatchNorm1d(cout), nn.Conv1d(cout, cout, 3, padding=1)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.selu(self.bn1(x)))
        h = self.conv2(F.selu(self.bn2(h)))
        return F.max_pool1d(h + self.skip(x), 3)


class SmallAASIST(nn.Module):
    """Sinc front end -> BN/SELU -> 4 residual conv blocks -> mean+max pooling -> linear (2 logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.front = SincFrontEnd()
        self.bn0 = nn.BatchNorm1d(32)
        self.blocks = nn.Sequential(ResBlock(32, 64), ResBlock(64, 96), ResBlock(96, 128), ResBlock(128, 128))
        self.head = nn.Linear(256, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.selu(self.bn0(F.max_pool1d(self.front(x), 4)))
        h = self.blocks(h)
        return self.head(torch.cat([h.mean(-1), h.amax(-1)], 1))


def build_configs(base: nn.Module, loss: nn.Module) -> dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor], object]]:
    def adam(m: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(m.parameters(), lr=1e-4, weight_decay=1e-4)

    m0 = copy.deepcopy(base)
    o0 = adam(m0)
    configs: dict[str, Callable] = {"plain DA": lambda x, xa, y: plain_da_step(m0, loss, o0, x, xa, y)}
    for rule in ("none", "pcgrad", "gradvac", "cagrad", "mgda"):
        for gran in ("model", "layer"):
            m = copy.deepcopy(base)
            configs[f"dual {rule}/{gran}"] = DualPathStep(m, loss, adam(m), make_aligner(rule, granularity=gran))
    for rule in ("none", "pcgrad"):
        m = copy.deepcopy(base)
        configs[f"joint {rule}/model"] = DualPathStep(m, loss, adam(m), make_aligner(rule), mode="joint")
    return configs


def _alloc_events(prof: profile) -> list[tuple[int, int, bool]]:
    """(time, signed bytes, inside dpda.align) for every CPU allocator event, in time order."""
    out: list[tuple[int, int, bool]] = []

    def walk(node, in_align: bool) -> None:
        in_align = in_align or node.name == "dpda.align"
        if node.tag == torch._C._profiler._EventType.Allocation:
            out.append((node.start_time_ns, int(node.extra_fields.alloc_size), in_align))
        for ch in node.children:
            walk(ch, in_align)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, False)
    return sorted(out)


def measure_memory(fn: Callable, batch: tuple) -> tuple[int, int]:
    """(peak bytes above the start over the step, peak transient bytes inside dpda.align)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(*batch)
    level = peak = 0
    align_level = align_peak = 0
    for _, nbytes, in_align in _alloc_events(prof):
        level += nbytes
        peak = max(peak, level)
        if in_align:
            align_level += nbytes
            align_peak = max(align_peak, align_level)
    return peak, align_peak


def align_time(step: object, calls: int = 20) -> float:
    """Median ms of the alignment alone on the step's flat gradients (NaN for plain DA)."""
    if not isinstance(step, DualPathStep):
        return float("nan")
    buf = step.grad_buffers()
    go, ga = buf[0].clone(), buf[1].clone()
    out = torch.empty_like(ga)
    ts = []
    for _ in range(calls):
        t0 = time.perf_counter()
        step.aligner(go, ga, step.segments, out=out)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8, help="utterances per path")
    ap.add_argument("--samples", type=int, default=16000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    base = SmallAASIST().train()
    n_params = sum(p.numel() for p in base.parameters() if p.requires_grad)
    p_bytes = n_params * 4
    x = torch.randn(args.batch, args.samples, generator=g) * 0.1
    xa = x + 0.05 * torch.randn(args.batch, args.samples, generator=g)
    y = torch.randint(0, 2, (args.batch,), generator=g)
    loss = nn.CrossEntropyLoss(weight=torch.tensor([0.1, 0.9]))
    configs = build_configs(base, loss)
    names = list(configs)
    for fn in configs.values():  # warm-up (allocator, oneDNN kernels, Adam state)
        fn(x, xa, y)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            c0, t0 = time.thread_time(), time.perf_counter()
            configs[n](x, xa, y)
            times[n].append(time.perf_counter() - t0)
            cpu[n].append(time.thread_time() - c0)
    align_ms = {n: align_time(configs[n]) for n in names}
    mem = {n: measure_memory(configs[n], (x, xa, y)) for n in names}
    base_t = statistics.median(times["plain DA"])
    base_c = statistics.median(cpu["plain DA"])
    base_peak = mem["plain DA"][0]
    print(f"model: SmallAASIST, {n_params:,} trainable params ({p_bytes / 2**20:.2f} MiB fp32); "
          f"batch {args.batch}/path x {args.samples} samples; threads {args.threads}; "
          f"median of {args.repeats} interleaved repeats; plain DA step = {base_t * 1e3:.0f} ms wall, "
          f"{base_c * 1e3:.0f} ms CPU")
    print(f"{'config':<20} {'wall/plainDA':>12} {'cpu/plainDA':>11} {'align ms':>8} {'persistent/P':>12} "
          f"{'align/P':>8} {'extra/P':>8} {'step peak/P vs plainDA':>23}")
    for n in names:
        t = statistics.median(times[n]) / base_t
        c = statistics.median(cpu[n]) / base_c
        peak, align_peak = mem[n]
        step = configs[n]
        # the step's (2, P) buffer minus the row that serves as .grad (plain DA allocates .grad too)
        persistent = step.grad_buffers().numel() * 4 / p_bytes - 1 if isinstance(step, DualPathStep) else 0.0
        align = align_peak / p_bytes
        print(f"{n:<20} {t:>12.3f} {c:>11.3f} {align_ms[n]:>8.2f} {persistent:>12.2f} {align:>8.2f} {persistent + align:>8.2f} "
              f"{(peak - base_peak) / p_bytes:>23.1f}")


if __name__ == "__main__":
    main()
