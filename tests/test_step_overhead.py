"""The dual-path step's own machinery, counted with torch.profiler on the CPU: one host sync per
step, and an operator count that does not grow with the number of parameter tensors.

Behaviour, not timing: on a GPU each top-level operator is a kernel launch and each sync stalls
the launch queue, so these counts are what the step costs beyond its passes
(`dpda.train.op_count`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dpda.align import RULES, make_aligner
from dpda.train.op_count import profile_ops
from dpda.train.step import DualPathStep
from step_support import DEVICE, LOSS, ConvNet, conv_batch

torch.set_num_threads(1)


def _step(model: nn.Module, rule: str = "pcgrad", granularity: str = "model", **kw) -> DualPathStep:
    model = model.to(DEVICE)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return DualPathStep(model, LOSS.to(DEVICE), opt, make_aligner(rule, granularity=granularity), **kw)


def toy_batch(seed: int) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(DEVICE) for t in conv_batch(seed))


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("granularity", ["model", "layer"])
@pytest.mark.parametrize("mode", ["separate", "joint"])
def test_one_host_sync_per_step(rule: str, granularity: str, mode: str) -> None:
    step = _step(ConvNet(), rule, granularity, mode=mode, clip_norm=1.0, reduce_fn=lambda b: b.mul_(1.0))
    x, xa, y = toy_batch(1)
    step(x, xa, y)  # Adam state exists from here on
    counts = profile_ops(step, x, xa, y)
    assert counts.syncs["step"] == 1, counts.step_syncs
    assert counts.syncs["passes"] == 0


def test_one_host_sync_with_a_grad_scaler_and_on_a_skipped_step() -> None:
    step = _step(ConvNet(), "cagrad", "layer", scaler=torch.amp.GradScaler(DEVICE.type, init_scale=2.0**8))
    x, xa, y = toy_batch(2)
    step(x, xa, y)
    assert profile_ops(step, x, xa, y).syncs["step"] == 1  # the scaler's found-inf check
    plain = _step(ConvNet(), "pcgrad", "layer")
    bad = x.clone()
    bad[0, 0] = float("nan")
    counts = profile_ops(plain, bad, xa, y)  # also the first step: the layout was built beforehand
    assert counts.syncs["step"] == 1
    assert plain(bad, xa, y).to_host()["skipped"] is True


class _Tensors(nn.Module):
    """`count` parameter tensors holding `total` numbers between them; all get gradients."""

    def __init__(self, total: int, count: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(count)
        sizes = [total // count + (i < total % count) for i in range(count)]
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(n, generator=g) * 0.1) for n in sizes])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.stack([torch.tanh(w).mean() for w in self.weights])
        return x[:, :2] * s.sum() + x[:, 2:4] * (s * s).sum()


@pytest.mark.parametrize("granularity", ["model", "layer"])
def test_step_operator_count_does_not_grow_with_the_number_of_tensors(granularity: str) -> None:
    x, xa, y = toy_batch(3)
    counts = {}
    for count in (3, 17, 60):
        model = _Tensors(5000, count)
        assert sum(p.numel() for p in model.parameters()) == 5000
        step = _step(model, "pcgrad", granularity)
        step(x, xa, y)
        counts[count] = profile_ops(step, x, xa, y)
    ops = {c: (v.ops["step"], v.views["step"]) for c, v in counts.items()}
    assert len(set(ops.values())) == 1, ops
    assert all(v.syncs["step"] == 1 for v in counts.values())


def test_layer_granularity_adds_a_fixed_number_of_operators() -> None:
    x, xa, y = toy_batch(4)
    extra = set()
    for count in (3, 60):
        per = {}
        for granularity in ("model", "layer"):
            step = _step(_Tensors(5000, count), "mgda", granularity)
            step(x, xa, y)
            per[granularity] = profile_ops(step, x, xa, y).ops["step"]
        extra.add(per["layer"] - per["model"])
    assert len(extra) == 1 and 0 <= extra.pop() <= 16
