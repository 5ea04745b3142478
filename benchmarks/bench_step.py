"""Step time and extra memory of the dual-path step vs. a plain DA step, on the CPU or a GPU.

Run (CPU, this file's AASIST-sized model): .venv/bin/python benchmarks/bench_step.py [--repeats 7] [--threads 1]
Run (GPU, a registry model, the published setup): .venv/bin/python benchmarks/bench_step.py --device cuda
    --model ssl_conformer_tcm:full --batch 5 --samples 66800 [--amp bf16] [--repeats 6 --warmup 2]
    [--profile traces/]   (one torch.profiler Chrome trace per configuration + the top operators)
    [--op-counts]         (host syncs and top-level operators per step, by region)
Rows: plain DA, `dual` (align.mode separate), `joint` (published), `batched` (one vmapped pass; a
model it cannot run prints one "not run" line instead of its rows). On the GPU machine:
benchmarks/gpu_step_check.sh runs the issue's configurations in one go.

Many paths: `--paths 1 2 3 4` runs the table once per K (augmented paths, `augment.paths`; P = K + 1
gradients). For K > 1 the reference row `plain xP` is one plain step (one forward and one backward)
over the concatenated (K + 1) x batch, i.e. plain training with the same forward passes; "align %"
is the alignment's share of the step (Gram matrices + rule coefficients + the fused update, timed
alone on the step's buffer: on the CPU its thread CPU time over the step's, which other processes
on the machine do not inflate; on a GPU wall times). persistent/P is K for separate and
joint modes: the K gradient rows the step keeps beyond .grad (the step's memory beyond plain
training is K + 1 gradient rows, .grad included).

On a GPU each timed step is bracketed by ``torch.cuda.synchronize``; memory is the CUDA peak
above the level at the step's start, minus the same for plain DA, over the parameter bytes (the
issue's "peak memory beyond plain DA"). The CPU columns below apply on the CPU.

Time: every configuration does one optimizer step (Adam) on the same batch (8 utterances per
path of 16,000 samples); configurations are interleaved within each repeat (order rotated per
repeat) and the median over repeats is printed as a ratio to the plain DA step (one forward and
one backward over the concatenated 16-utterance batch). Two clocks: wall time, and the calling
thread's CPU time (``time.thread_time``; with --threads 1 all torch work runs on that thread, so
it is insensitive to other processes competing for the 2 cores). "align cpu" (CPU; "align ms" on a GPU) is the alignment
alone (dots + rule + writing the update) on the model's flat gradients, median of 20 calls.

Memory: one extra step per configuration under ``torch.profiler`` with ``profile_memory=True``;
the CPU allocator's allocation/free events are replayed in time order. Columns:
- persistent/P: bytes the step keeps allocated between steps beyond parameters, ``.grad`` and
  optimizer state, over the parameter bytes (the original-path row of the (2, P) buffer; in
  batched mode also the two per-path parameter copies and running statistics; also on a GPU);
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
from collections.abc import Callable

import torch
import torch.nn.functional as F
from dpda.align import make_aligner
from dpda.errors import UserError
from dpda.train.baseline_steps import plain_da_step, single_path_step
from dpda.train.step import DualPathStep
from torch import nn
from torch.profiler import ProfilerActivity, profile

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


def parse_model(spec: str) -> tuple[str, str]:
    """'NAME:PRESET' (preset defaults to 'full'); 'small_aasist' is this file's CPU model."""
    name, _, preset = spec.partition(":")
    return name, preset or "full"


def build_base(spec: str, device: torch.device) -> nn.Module:
    name, preset = parse_model(spec)
    if name == "small_aasist":
        torch.manual_seed(0)
        return SmallAASIST().to(device).train()
    from dpda.models import build_model

    return build_model(name, preset, seed=0).to(device).train()


def build_configs(base: nn.Module, loss: nn.Module, rules: list[str], granularities: list[str], modes: list[str],
                  joint_rules: list[str], amp: torch.dtype | None, scaled: bool,
                  paths: int = 1) -> dict[str, Callable[[torch.Tensor, list[torch.Tensor], torch.Tensor], object]]:
    """One independent (model copy, Adam) per configuration, so no configuration sees another's state.
    Separate and batched modes: every rule x granularity; joint mode (the published forward):
    `joint_rules`, model granularity. Every step takes (x, [one batch per augmented path], y);
    with `paths` > 1 the reference is one plain step over the concatenated batch."""
    def adam(m: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-4, weight_decay=1e-4)

    def scaler() -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(next(base.parameters()).device.type) if scaled else None

    m0 = copy.deepcopy(base)
    o0, s0 = adam(m0), scaler()
    if paths == 1:
        configs: dict[str, Callable] = {
            "plain DA": lambda x, xa, y: plain_da_step(m0, loss, o0, x, xa[0], y, scaler=s0, autocast_dtype=amp)}
    else:
        configs = {f"plain x{paths + 1}": lambda x, xa, y: single_path_step(
            m0, loss, o0, torch.cat([x, *xa]), y.repeat(len(xa) + 1), scaler=s0, autocast_dtype=amp)}
    label = {"separate": "dual", "joint": "joint", "batched": "batched"}
    for mode in modes:
        for rule in joint_rules if mode == "joint" else rules:
            for gran in ["model"] if mode == "joint" else granularities:
                m = copy.deepcopy(base)
                try:
                    configs[f"{label[mode]} {rule}/{gran}"] = DualPathStep(
                        m, loss, adam(m), make_aligner(rule, granularity=gran), mode=mode, scaler=scaler(),
                        autocast_dtype=amp, augmented_paths=paths)
                except UserError as exc:  # a model the batched pass cannot run, a rule without a K-path form
                    print(f"{label[mode]} {rule}/{gran}: not run: {exc}")
    return configs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cuda_peak(fn: Callable, batch: tuple, device: torch.device) -> int:
    """Peak CUDA bytes allocated during one step above the level at its start."""
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    fn(*batch)
    sync(device)
    return torch.cuda.max_memory_allocated(device) - start


def write_profiles(configs: dict[str, Callable], batch: tuple, device: torch.device, out: str, top: int) -> None:
    """One step of each configuration under torch.profiler: a Chrome trace per configuration in
    `out`, and the `top` operators by self device (or CPU) time printed, to show what costs what."""
    import os

    os.makedirs(out, exist_ok=True)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    for name, fn in configs.items():
        with profile(activities=acts, record_shapes=False) as prof:
            fn(*batch)
            sync(device)
        path = os.path.join(out, name.replace(" ", "_").replace("/", "-") + ".json")
        prof.export_chrome_trace(path)
        print(f"\n== {name}: trace {path}")
        print(prof.key_averages().table(sort_by=sort, row_limit=top))


def print_op_counts(configs: dict[str, Callable], batch: tuple) -> None:
    """One profiled step per configuration: host syncs and top-level operators (views apart) per
    region. On a GPU every operator is a kernel launch (or more) and every sync drains the queue."""
    from dpda.train.op_count import profile_ops

    print("\nper step (one profiled step; plain DA has no dpda.pass ranges, so all of it counts as 'step'):")
    for name, fn in configs.items():
        print(f"{name:<20} {profile_ops(fn, *batch).summary()}")


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


def align_time(step: object, calls: int = 20) -> tuple[float, float]:
    """Median (wall ms, thread CPU ms) of the alignment alone on the step's flat gradients (NaN for plain DA): for two
    paths the aligner (dots, rule, update), for more the step's own Gram -> coefficients -> fused
    update, each call on a fresh copy of the gradient rows (the copy is not timed)."""
    if not isinstance(step, DualPathStep):
        return float("nan"), float("nan")
    buf = step.grad_buffers()
    saved = buf.clone()
    device = buf.device
    losses = torch.zeros(buf.shape[0], device=device)
    ok = torch.ones((), dtype=torch.bool, device=device)
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in step.path_state.items()}
    ts, cs = [], []
    for _ in range(calls):
        buf.copy_(saved)
        sync(device)
        c0, t0 = time.thread_time(), time.perf_counter()
        if buf.shape[0] == 2:
            step.aligner(buf[0], buf[1], step.segments, out=buf[1])
        else:
            step._align_paths(losses, ok)  # the step's own alignment (Gram, rule, update)
        sync(device)
        ts.append(time.perf_counter() - t0)
        cs.append(time.thread_time() - c0)
    buf.copy_(saved)
    step.path_state.clear()
    step.path_state.update(state)
    return statistics.median(ts) * 1e3, statistics.median(cs) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per configuration first")
    ap.add_argument("--batch", type=int, default=8, help="utterances per path")
    ap.add_argument("--samples", type=int, default=16000)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--model", default="small_aasist",
                    help="NAME:PRESET from dpda's registry (e.g. ssl_conformer_tcm:full, aasist:full), "
                         "or small_aasist (this file's CPU model)")
    ap.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none",
                    help="autocast dtype for forward and loss (fp16 adds a GradScaler to every step)")
    ap.add_argument("--rules", default="none,pcgrad,gradvac,cagrad,mgda")
    ap.add_argument("--granularity", default="model,layer")
    ap.add_argument("--modes", default="separate,joint,batched",
                    help="separate (two passes), joint (published), batched (one vmapped pass, align.mode: batched)")
    ap.add_argument("--joint-rules", default="none,pcgrad", help="rules run in joint mode (model granularity)")
    ap.add_argument("--profile", metavar="DIR", help="also write one torch.profiler trace per configuration")
    ap.add_argument("--top", type=int, default=15, help="operators printed per profile")
    ap.add_argument("--op-counts", action="store_true",
                    help="also profile one step per configuration and print its host syncs and top-level "
                         "operator counts by region (step machinery, optimizer, passes: dpda.train.op_count)")
    ap.add_argument("--paths", type=int, nargs="+", default=[1], metavar="K",
                    help="augmented paths per step (augment.paths), one table per K: e.g. --paths 1 2 3 4")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for k in args.paths:
        run_table(args, k)


def run_table(args: argparse.Namespace, paths: int) -> None:
    """One table: every configuration with `paths` augmented paths against its plain reference."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    amp = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    g = torch.Generator().manual_seed(0)
    base = build_base(args.model, device)
    n_params = sum(p.numel() for p in base.parameters() if p.requires_grad)
    p_bytes = n_params * 4
    x = (torch.randn(args.batch, args.samples, generator=g) * 0.1).to(device)
    xa = [x + 0.05 * torch.randn(args.batch, args.samples, generator=g).to(device) for _ in range(paths)]
    y = torch.randint(0, 2, (args.batch,), generator=g).to(device)
    batch = (x, xa, y)
    loss = nn.CrossEntropyLoss(weight=torch.tensor([0.1, 0.9], device=device))
    configs = build_configs(base, loss, args.rules.split(","), args.granularity.split(","), args.modes.split(","),
                            args.joint_rules.split(","), amp, scaled=args.amp == "fp16", paths=paths)
    del base
    for _ in range(max(args.warmup, 1)):  # allocator, cuDNN/oneDNN autotuning, Adam state
        for name in list(configs):
            try:
                configs[name](*batch)
            except UserError as exc:  # the batched pass refuses at its first step: drop that row
                print(f"{name}: not run: {exc}")
                del configs[name]
    names = list(configs)
    plain = names[0]
    sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            sync(device)
            c0, t0 = time.thread_time(), time.perf_counter()
            configs[n](*batch)
            sync(device)
            times[n].append(time.perf_counter() - t0)
            cpu[n].append(time.thread_time() - c0)
    align_ms = {n: align_time(configs[n]) for n in names}
    if cuda:
        mem = {n: (cuda_peak(configs[n], batch, device), 0) for n in names}
    else:
        mem = {n: measure_memory(configs[n], batch) for n in names}
    base_t = statistics.median(times[plain])
    base_c = statistics.median(cpu[plain])
    base_peak = mem[plain][0]
    print(f"\nK = {paths} augmented path(s), P = {paths + 1} gradients; model: {args.model}, {n_params:,} trainable "
          f"params ({p_bytes / 2**20:.2f} MiB fp32); device {device}; amp {args.amp}; batch {args.batch}/path x "
          f"{args.samples} samples; threads {args.threads}; median of {args.repeats} interleaved repeats after "
          f"{args.warmup} warm-up; {plain} step = {base_t * 1e3:.1f} ms wall, {base_c * 1e3:.1f} ms host CPU")
    print(f"memory beyond plain training: {paths + 1} gradient rows (.grad and {paths} more: persistent/P)")
    if cuda:  # host CPU time and the CPU allocator replay say nothing about the GPU
        print(f"{'config':<20} {'ms':>8} {'wall/plain':>10} {'align ms':>8} {'align %':>7} {'persistent/P':>12} "
              f"{'step peak/P vs plain':>21}")
    else:
        print(f"{'config':<20} {'ms':>8} {'wall/plain':>10} {'cpu/plain':>9} {'align cpu':>9} {'align %':>7} "
              f"{'persistent/P':>12} {'align/P':>8} {'extra/P':>8} {'step peak/P vs plain':>21}")
    for n in names:
        ms = statistics.median(times[n]) * 1e3
        t = statistics.median(times[n]) / base_t
        c = statistics.median(cpu[n]) / base_c
        a_wall, a_cpu = align_ms[n]
        share = 100 * (a_wall / ms if cuda else a_cpu / (statistics.median(cpu[n]) * 1e3))
        peak, align_peak = mem[n]
        step = configs[n]
        beyond = (peak - base_peak) / p_bytes
        # what the step keeps beyond .grad (plain DA allocates .grad too): the buffer's rows but
        # the last, and in batched mode the per-path parameter copies
        persistent = step.persistent_numel * 4 / p_bytes if isinstance(step, DualPathStep) else 0.0
        if cuda:
            print(f"{n:<20} {ms:>8.1f} {t:>10.3f} {a_wall:>8.2f} {share:>7.2f} {persistent:>12.2f} {beyond:>21.2f}")
            continue
        align = align_peak / p_bytes
        print(f"{n:<20} {ms:>8.1f} {t:>10.3f} {c:>9.3f} {a_cpu:>9.2f} {share:>7.2f} {persistent:>12.2f} "
              f"{align:>8.2f} {persistent + align:>8.2f} {beyond:>21.1f}")
    if args.op_counts:
        print_op_counts(configs, batch)
    if args.profile:
        write_profiles(configs, batch, device, args.profile, args.top)

if __name__ == "__main__":
    main()
