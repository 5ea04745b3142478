"""`align.mode: batched` (both paths as one vmapped pass) equals `separate` (two passes): path
gradients, update, statistics, BatchNorm running statistics, optimizer updates, for every rule
and granularity, clipping, the reduce hook and a GradScaler; the models it cannot run, and
autocast (which vmap would silently turn into float32 convolutions), are refused in one line.
Runs on the accelerator when there is one (benchmarks/gpu_step_check.sh), else on the CPU."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dpda.align import RULES, make_aligner
from dpda.errors import UserError
from dpda.train.op_count import profile_ops
from dpda.train.step import DualPathStep
from step_support import DEVICE, LOSS, ConvNet, conv_batch

torch.set_num_threads(1)
LOSS_D = LOSS.to(DEVICE)


def _run(model: nn.Module, mode: str, rule: str = "pcgrad", granularity: str = "model", steps: int = 2,
         batches=None, **kw):
    """`steps` optimizer steps (SGD with momentum: linear in the gradients, so equal gradients
    give equal weights; Adam's normalisation would amplify float noise of near-zero entries);
    returns (buffer, host stats per step, state_dict, reduce calls)."""
    model = copy.deepcopy(model).to(DEVICE)
    calls = []

    def reduce_fn(buf: torch.Tensor) -> None:
        calls.append(tuple(buf.shape))
        buf.mul_(0.5).mul_(2.0)

    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    step = DualPathStep(model, LOSS_D, opt, make_aligner(rule, granularity=granularity), mode=mode,
                        reduce_fn=reduce_fn, **kw)
    batches = batches or [conv_batch(10 + i) for i in range(steps)]
    hosts = [step(*(t.to(DEVICE) for t in b)).to_host() for b in batches]
    return step.grad_buffers().clone(), hosts, copy.deepcopy(model.state_dict()), calls


def _assert_same(sep, bat, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    (b_s, h_s, st_s, c_s), (b_b, h_b, st_b, c_b) = sep, bat
    torch.testing.assert_close(b_b, b_s, rtol=rtol, atol=atol)
    assert c_b == c_s and len(c_b) == len(h_b)  # one collective per step, same (2, P) buffer
    for hs, hb in zip(h_s, h_b):
        assert hs["skipped"] is hb["skipped"] is False
        for k, v in hs.items():
            if isinstance(v, list):
                torch.testing.assert_close(torch.tensor(hb[k]), torch.tensor(v), rtol=rtol * 10, atol=atol * 100)
            elif isinstance(v, float):
                assert hb[k] == pytest.approx(v, rel=rtol * 10, abs=atol * 100), k
    for k, v in st_s.items():  # weights after the optimizer steps, running statistics, batch counters
        if v.is_floating_point():
            torch.testing.assert_close(st_b[k], v, rtol=rtol, atol=atol, msg=k)
        else:
            assert torch.equal(st_b[k], v), k


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("granularity", ["model", "layer"])
def test_batched_equals_separate_for_every_rule(rule: str, granularity: str) -> None:
    model = ConvNet()
    _assert_same(_run(model, "separate", rule, granularity, clip_norm=1.0),
                 _run(model, "batched", rule, granularity, clip_norm=1.0))


def test_batched_running_statistics_and_counters_as_two_passes() -> None:
    model = ConvNet()
    _, _, st_s, _ = _run(model, "separate", steps=3)
    _, _, st_b, _ = _run(model, "batched", steps=3)
    assert int(st_b["bn.num_batches_tracked"]) == 6  # two batches per step, as two passes count
    for k in ("bn.running_mean", "bn.running_var", "bn2.running_mean", "bn2.running_var"):
        assert not torch.allclose(st_b[k], ConvNet().state_dict()[k].to(DEVICE))  # they moved
        torch.testing.assert_close(st_b[k], st_s[k], rtol=1e-5, atol=1e-6)


def test_batched_with_a_grad_scaler_equals_separate() -> None:
    model = ConvNet()
    runs = [_run(model, mode, "cagrad", "layer",
                 scaler=torch.amp.GradScaler(DEVICE.type, init_scale=2.0**10)) for mode in ("separate", "batched")]
    b_s, b_b = runs[0][0], runs[1][0]  # row 0 keeps the scaled g_orig (x 2^10): compare it scaled back
    torch.testing.assert_close(b_b[0] / 2.0**10, b_s[0] / 2.0**10, rtol=1e-4, atol=1e-6)
    _assert_same((b_s[1:],) + runs[0][1:], (b_b[1:],) + runs[1][1:])


def test_batched_refuses_autocast_instead_of_running_convolutions_in_float32() -> None:
    """Inside vmap a convolution of batched tensors ignores autocast (it would run in float32
    while separate mode runs it in bf16): the step refuses rather than silently differ."""
    model = ConvNet()
    with pytest.raises(UserError, match=r"align.mode: batched cannot run under autocast \(optim.amp\)"):
        DualPathStep(model, LOSS, torch.optim.SGD(model.parameters(), lr=0.1), make_aligner("pcgrad"), mode="batched",
                     autocast_dtype=torch.bfloat16)
    from torch.func import vmap

    w, x = torch.randn(2, 4, 1, 3, device=DEVICE), torch.randn(2, 5, 1, 20, device=DEVICE)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):  # the reason, as torch behaves today
        assert torch.nn.functional.conv1d(x[0], w[0]).dtype == torch.bfloat16
        assert vmap(torch.nn.functional.conv1d)(x, w).dtype == torch.float32


def test_batched_runs_the_paths_in_fewer_operators_than_two_passes() -> None:
    model = ConvNet().to(DEVICE)
    batch = tuple(t.to(DEVICE) for t in conv_batch(5))
    counts = {}
    for mode in ("separate", "batched"):
        m = copy.deepcopy(model)
        step = DualPathStep(m, LOSS_D, torch.optim.Adam(m.parameters(), lr=1e-3), make_aligner("pcgrad"), mode=mode)
        step(*batch)
        counts[mode] = profile_ops(step, *batch)
    assert counts["batched"].syncs["step"] == 1 and counts["batched"].syncs["passes"] == 0
    assert counts["batched"].ops["passes"] < counts["separate"].ops["passes"]


class _DataDependent(nn.Module):
    """Python control flow on a tensor's value: vmap cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(400, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * 2 if x.abs().max() > 50 else self.lin(x)


def test_linear_weights_enter_as_views_and_convolution_kernels_as_copies() -> None:
    """persistent memory of the batched pass: per-path copies only of 3-d+ kernels (and running
    statistics); matrices and vectors are stride-0 views of the parameters."""
    mlp = nn.Sequential(nn.Linear(400, 16), nn.Tanh(), nn.Linear(16, 2)).to(DEVICE)
    n = sum(p.numel() for p in mlp.parameters())
    step = DualPathStep(mlp, LOSS_D, torch.optim.SGD(mlp.parameters(), lr=0.1), make_aligner("none"), mode="batched")
    assert step.persistent_numel == n  # row 0 of the gradient buffer only
    conv = ConvNet().to(DEVICE)
    step = DualPathStep(conv, LOSS_D, torch.optim.SGD(conv.parameters(), lr=0.1), make_aligner("none"), mode="batched")
    kernels = conv.conv.weight.numel() + conv.conv2.weight.numel()
    stats = sum(b.numel() for k, b in conv.state_dict().items() if "running" in k)
    assert step.persistent_numel == sum(p.numel() for p in conv.parameters()) + 2 * (kernels + stats)


def test_models_batched_cannot_run_are_refused_in_one_line() -> None:
    opt_of = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)  # noqa: E731
    gru = nn.Sequential(nn.Linear(4, 4), nn.GRU(4, 4))
    with pytest.raises(UserError, match=r"align.mode: batched cannot run model Sequential: 1 is a GRU"):
        DualPathStep(gru, LOSS, opt_of(gru), make_aligner("none"), mode="batched")
    cumulative = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, momentum=None))
    with pytest.raises(UserError, match="momentum=None"):
        DualPathStep(cumulative, LOSS, opt_of(cumulative), make_aligner("none"), mode="batched")
    dd = _DataDependent().to(DEVICE)
    step = DualPathStep(dd, LOSS_D, opt_of(dd), make_aligner("none"), mode="batched")
    with pytest.raises(UserError, match=r"^align.mode: batched cannot run model _DataDependent as one batched pass .*"
                                        r"use align.mode: separate$"):
        step(*(t.to(DEVICE) for t in conv_batch(6)))


def _no_dropout(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0  # dropout draws differ between the modes; without it the numbers must agree
    return model


@pytest.mark.parametrize("name", ["aasist", "lcnn", "rawnet2", "ssl_conformer_tcm", "ssl_aasist", "ssl_mamba",
                                  "ssl_nes2net_x", "ssl_sls"])
def test_registry_models_under_batched(name: str) -> None:
    """The `tiny` presets: AASIST, LFCC-LCNN and the SSL models (XLS-R front end, layer drop 0) run
    batched with separate mode's numbers (fp32); RawNet2 (GRU) is refused at construction."""
    from dpda.models import build_model

    model = _no_dropout(build_model(name, "tiny", seed=0)).train()
    if name == "rawnet2":
        with pytest.raises(UserError, match="align.mode: batched cannot run model"):
            DualPathStep(model, LOSS, torch.optim.SGD(model.parameters(), lr=0.1), make_aligner("none"), mode="batched")
        return
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16000, generator=g) * 0.1
    batches = [(x, -0.5 * x + 0.05 * torch.randn(2, 16000, generator=g), torch.tensor([0, 1]))]
    (b_s, h_s, st_s, _), (b_b, h_b, st_b, _) = (_run(model, mode, "none", "model", batches=batches)
                                                for mode in ("separate", "batched"))
    # float32 noise of a deep network (and biases before BatchNorm, whose true gradient is 0):
    # compare whole rows by norm, and the statistics
    for row in range(2):
        assert float((b_b[row] - b_s[row]).norm() / b_s[row].norm()) < 1e-3
    for k in ("cos", "norm_orig", "norm_aug", "loss_orig", "loss_aug"):
        assert h_b[0][k] == pytest.approx(h_s[0][k], rel=1e-3, abs=1e-5), k
    for k, v in st_s.items():
        if "running" in k or "num_batches" in k:
            torch.testing.assert_close(st_b[k], v, rtol=1e-3, atol=1e-5, msg=k)
