"""Host syncs and operator counts of one call, from a torch.profiler trace, by region.

Why: on a GPU a training step's cost beyond its forward/backward passes is mostly kernel
launches and host syncs of its own machinery (gradient bookkeeping, per-tensor loops, guards,
statistics). Both show on the CPU too: every top-level ``aten::`` operator is (at least) one
launch, and a host sync is an operator that must read a device value (``.item()``, ``bool()``,
``nonzero``...). Counting them on the CPU, per region, gives launch and sync figures that tests
can assert exactly and benchmarks can print, without a GPU.

Regions: ``passes`` (inside a ``dpda.pass.*`` range: the model's forward and backward),
``optimizer`` (inside torch's ``Optimizer.step#...`` range), ``step`` (everything else: the
step's own machinery).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile

# Operators that read a device value on the host (a sync on a GPU). `_local_scalar_dense` is what
# .item(), bool(t), float(t) and `if t:` end in; the others size their output from the data.
SYNC_OPS = frozenset({
    "aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2",
    "aten::unique_dim", "aten::unique_consecutive", "aten::nonzero_static",
})
# Operators that only make a view (host-side metadata, no kernel): counted apart from `ops`.
VIEW_OPS = frozenset({
    "aten::slice", "aten::select", "aten::view", "aten::expand", "aten::expand_as", "aten::reshape",
    "aten::_reshape_alias", "aten::detach", "aten::as_strided", "aten::unsqueeze", "aten::squeeze",
    "aten::t", "aten::transpose", "aten::permute", "aten::alias", "aten::unbind", "aten::split",
    "aten::narrow", "aten::view_as", "aten::lift_fresh", "aten::chunk", "aten::unflatten", "aten::flatten",
})
PASS_PREFIX = "dpda.pass"
OPTIMIZER_PREFIX = "Optimizer.step#"
REGIONS = ("step", "passes", "optimizer")


@dataclass
class OpCounts:
    """Top-level operators (views apart) and host syncs per region, and the names of the step's own.

    On the CPU every ``.item()`` counts, also on CPU-resident tensors: torch's optimizers read
    their step counters (CPU tensors unless ``capturable``) that way, and those are no GPU sync;
    the ``step`` region's syncs are the ones the step itself must answer for."""

    ops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0))  # kernel ops
    views: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0))
    syncs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REGIONS, 0))
    step_ops: Counter = field(default_factory=Counter)  # names of the `step` region's operators
    step_syncs: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        return (f"step machinery: {self.ops['step']} ops (+{self.views['step']} views), "
                f"{self.syncs['step']} host syncs; "
                f"optimizer: {self.ops['optimizer']} ops; passes: {self.ops['passes']} ops, "
                f"{self.syncs['passes']} syncs")


def _region(name: str, current: str) -> str:
    if name.startswith(PASS_PREFIX):
        return "passes"
    if name.startswith(OPTIMIZER_PREFIX):
        return "optimizer"
    return current


def count_ops(prof: profile) -> OpCounts:
    """Count a finished profile's top-level aten operators per region, and its host syncs."""
    out = OpCounts()

    def walk(node: Any, region: str, under_op: bool) -> None:
        name = node.name
        region = _region(name, region)
        is_op = name.startswith("aten::")
        if name in SYNC_OPS:
            out.syncs[region] += 1
            if region == "step":
                out.step_syncs[name] += 1
        if is_op and not under_op:
            (out.views if name in VIEW_OPS else out.ops)[region] += 1
            if region == "step":
                out.step_ops[name] += 1
        for child in node.children:
            walk(child, region, under_op or is_op)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root, "step", False)
    return out


def profile_ops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> OpCounts:
    """Run ``fn(*args, **kwargs)`` once under the CPU profiler and count its operators."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(*args, **kwargs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return count_ops(prof)
