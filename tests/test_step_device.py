"""DualPathStep on the accelerator (CUDA when present, else the CPU) against a float64 CPU
reference: path gradients, update, statistics, BatchNorm running statistics and the optimizer
update, for every rule, granularity and mode, the reduce hook and bf16 autocast.

No `support` import (it needs soundfile, which the GPU machine lacks): step_support, so
benchmarks/gpu_step_check.sh can run it there.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dpda.align import RULES, Segments, make_aligner
from dpda.train.step import DualPathStep
from step_support import DEVICE, LOSS, ConvNet, conv_batch

torch.set_num_threads(1)


def _flat(loss: torch.Tensor, params: list[nn.Parameter], retain: bool = False) -> torch.Tensor:
    gs = torch.autograd.grad(loss, params, retain_graph=retain)
    return torch.cat([g.reshape(-1) for g in gs])


def _reference(model: nn.Module, batch: tuple, rule: str, granularity: str, mode: str):
    """float64 CPU: per-path gradients, the aligned update, the model after its forward passes."""
    ref = copy.deepcopy(model).double().cpu()
    x, xa, y = (t.cpu() for t in batch)
    x, xa = x.double(), xa.double()
    loss = copy.deepcopy(LOSS).double()
    params = list(ref.parameters())
    if mode == "joint":
        out = ref(torch.cat([x, xa]))
        go = _flat(loss(out[: len(x)], y), params, retain=True)
        ga = _flat(loss(out[len(x):], y), params)
    else:
        go = _flat(loss(ref(x), y), params)
        ga = _flat(loss(ref(xa), y), params)
    seg = Segments.from_parameters(list(ref.named_parameters()))
    res = make_aligner(rule, granularity=granularity)(go, ga, seg)
    return go, ga, res, ref


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("granularity", ["model", "layer"])
@pytest.mark.parametrize("mode", ["separate", "joint"])
def test_step_on_the_device_equals_the_float64_reference(rule: str, granularity: str, mode: str) -> None:
    model = ConvNet()
    batch = conv_batch(1)
    go, ga, res, ref = _reference(model, batch, rule, granularity, mode)
    dev_model = copy.deepcopy(model).to(DEVICE)
    calls = []

    def reduce_fn(buf: torch.Tensor) -> None:  # stands in for all_reduce(SUM) / 2 over 2 equal workers
        calls.append(tuple(buf.shape))
        buf.mul_(2.0).div_(2.0)

    opt = torch.optim.SGD(dev_model.parameters(), lr=0.1)
    step = DualPathStep(dev_model, LOSS.to(DEVICE), opt, make_aligner(rule, granularity=granularity), mode=mode,
                        reduce_fn=reduce_fn)
    before = [p.detach().clone() for p in dev_model.parameters()]
    h = step(*(t.to(DEVICE) for t in batch)).to_host()
    buf = step.grad_buffers().double().cpu()
    tol = {"rtol": 2e-4, "atol": 2e-6}
    torch.testing.assert_close(buf[0], go, **tol)
    torch.testing.assert_close(buf[1], res.update, **tol)
    assert calls == [(2, go.numel())]
    assert h["skipped"] is False
    assert h["cos"] == pytest.approx(float(res.stats.cos), abs=1e-4)
    assert h["norm_orig"] == pytest.approx(float(go.norm()), rel=1e-4)
    assert h["norm_aug"] == pytest.approx(float(ga.norm()), rel=1e-4)
    assert h["update_norm"] == pytest.approx(float(res.update.norm()), rel=1e-4)
    assert h["cos_update_aug"] == pytest.approx(float(res.stats.cos_update_aug), abs=1e-4)
    torch.testing.assert_close(torch.tensor(h["layer_cos"], dtype=torch.float64), res.stats.layer_cos,
                               rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.tensor(h["layer_norm_aug"], dtype=torch.float64), res.stats.layer_norm_aug,
                               rtol=1e-4, atol=1e-7)
    for name, b in dev_model.named_buffers():  # running statistics as the reference's forward passes left them
        torch.testing.assert_close(b.cpu().double(), dict(ref.named_buffers())[name].double(), rtol=1e-4, atol=1e-6)
    offset = 0
    for p, p0 in zip(dev_model.parameters(), before):  # SGD applied exactly the aligned update
        n = p.numel()
        expected = p0.cpu().double() - 0.1 * res.update[offset : offset + n].view_as(p0)
        torch.testing.assert_close(p.detach().cpu().double(), expected, **tol)
        offset += n


@pytest.mark.parametrize("granularity", ["model", "layer"])
def test_bf16_autocast_on_the_device_stays_close_to_fp32(granularity: str) -> None:
    batch = tuple(t.to(DEVICE) for t in conv_batch(2))
    hosts = []
    for amp in (None, torch.bfloat16):
        m = ConvNet().to(DEVICE)
        step = DualPathStep(m, LOSS.to(DEVICE), torch.optim.Adam(m.parameters(), lr=1e-3),
                            make_aligner("pcgrad", granularity=granularity), autocast_dtype=amp)
        hosts.append(step(*batch).to_host())
        assert step.grad_buffers().dtype == torch.float32
    h32, h16 = hosts
    assert h16["skipped"] is False
    assert h16["cos"] == pytest.approx(h32["cos"], abs=0.05)
    assert h16["update_norm"] == pytest.approx(h32["update_norm"], rel=0.05)


@pytest.mark.parametrize("rule, granularity, mode, loud_path", [
    ("cagrad", "layer", "separate", 0), ("pcgrad", "model", "batched", 1)])
def test_skipped_step_on_the_device_restores_batchnorm_and_weights(rule, granularity, mode, loud_path) -> None:
    m = ConvNet().to(DEVICE)
    step = DualPathStep(m, LOSS.to(DEVICE), torch.optim.Adam(m.parameters(), lr=1e-3),
                        make_aligner(rule, granularity=granularity), mode=mode)
    x, xa, y = (t.to(DEVICE) for t in conv_batch(3))
    assert step(x, xa, y).to_host()["skipped"] is False
    state = copy.deepcopy(m.state_dict())
    paths = [x.clone(), xa.clone()]
    paths[loud_path][0] = float("inf")
    assert step(*paths, y).to_host()["skipped"] is True
    for k, v in m.state_dict().items():
        assert torch.equal(v, state[k]), k
