"""DualPathStep (dpda.train.step), plain_da_step and single_path_step (dpda.train.baseline_steps)
against autograd references."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dpda.align import make_aligner
from dpda.errors import UserError
from dpda.train.baseline_steps import plain_da_step, single_path_step
from dpda.train.step import DualPathStep
from support import tiny_mlp, toy_batch

torch.set_num_threads(1)








LOSS = nn.CrossEntropyLoss(weight=torch.tensor([0.1, 0.9]))


def _flat_grads(loss: torch.Tensor, params, retain: bool = False) -> torch.Tensor:
    gs = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, gs)])


def _ref_update(model: nn.Module, x, xa, y, rule: str, granularity: str, mode: str, **opts):
    """Reference: autograd.grad per path on a copy of the model, then the aligner on flat vectors."""
    m = copy.deepcopy(model)
    params = [p for p in m.parameters() if p.requires_grad]
    if mode == "joint":
        out = m(torch.cat([x, xa]))
        lo, la = LOSS(out[: len(x)], y), LOSS(out[len(x) :], y)
        go = _flat_grads(lo, params, retain=True)
        ga = _flat_grads(la, params)
    else:
        go = _flat_grads(LOSS(m(x), y), params)
        ga = _flat_grads(LOSS(m(xa), y), params)
    from dpda.align import Segments

    seg = Segments.from_parameters([(str(i), p) for i, p in enumerate(params)])
    res = make_aligner(rule, granularity=granularity, **opts)(go, ga, seg)
    return go, ga, res


def _sgd_step(model: nn.Module, rule: str = "none", granularity: str = "model", **kw) -> tuple[DualPathStep, torch.optim.Optimizer]:
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return DualPathStep(model, LOSS, opt, make_aligner(rule, granularity=granularity), **kw), opt


def test_none_equals_gradient_of_mean_loss_over_concatenated_batch() -> None:
    model = tiny_mlp()
    ref = copy.deepcopy(model)
    x, xa, y = toy_batch()
    step, _ = _sgd_step(model, "none")
    stats = step(x, xa, y)
    out = ref(torch.cat([x, xa]))
    expected = _flat_grads(LOSS(out, torch.cat([y, y])), list(ref.parameters()))
    torch.testing.assert_close(step.grad_buffers()[1], expected)
    # .grad is row 1 of the buffer, and SGD applied exactly that update
    assert all(p.grad.data_ptr() >= step.grad_buffers()[1].data_ptr() for p in model.parameters())
    for p, q, g in zip(model.parameters(), ref.parameters(), expected.split([p.numel() for p in ref.parameters()])):
        torch.testing.assert_close(p.detach(), q.detach() - 0.1 * g.view_as(q))
    assert not stats.to_host()["skipped"]


@pytest.mark.parametrize("rule", ["pcgrad", "gradvac", "cagrad", "mgda"])
@pytest.mark.parametrize("granularity", ["model", "layer"])
@pytest.mark.parametrize("mode", ["separate", "joint"])
def test_step_matches_autograd_reference(rule: str, granularity: str, mode: str) -> None:
    model = tiny_mlp(bn=True)
    x, xa, y = toy_batch(1)
    go, ga, res = _ref_update(model, x, xa, y, rule, granularity, mode)
    step, _ = _sgd_step(model, rule, granularity, mode=mode)
    stats = step(x, xa, y)
    torch.testing.assert_close(step.grad_buffers()[0], go)
    torch.testing.assert_close(step.grad_buffers()[1], res.update, rtol=1e-5, atol=1e-6)
    h = stats.to_host()
    assert h["cos"] == pytest.approx(float(res.stats.cos), abs=1e-6)
    assert h["norm_orig"] == pytest.approx(float(go.norm()), rel=1e-5)
    assert h["norm_aug"] == pytest.approx(float(ga.norm()), rel=1e-5)
    assert h["conflict"] == (float(go @ ga) < 0)
    assert h["update_norm"] == pytest.approx(float(res.update.norm()), rel=1e-5)
    assert h["cos_update_orig"] == pytest.approx(float(res.stats.cos_update_orig), abs=1e-6)
    assert len(h["layer_cos"]) == len(step.layer_names) == len(list(model.parameters()))


def test_joint_mode_mixes_batchnorm_statistics_separate_does_not() -> None:
    model = tiny_mlp(bn=True)
    x, xa, y = toy_batch(2)
    s1, _ = _sgd_step(copy.deepcopy(model), "none", mode="separate")
    s2, _ = _sgd_step(copy.deepcopy(model), "none", mode="joint")
    s1(x, xa, y)
    s2(x, xa, y)
    assert not torch.allclose(s1.grad_buffers()[0], s2.grad_buffers()[0])


def test_non_finite_loss_skips_and_leaves_weights_and_optimizer_state() -> None:
    model = tiny_mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    poison = {"on": False}

    def loss_fn(logits, y):
        loss = LOSS(logits, y)
        return loss * float("nan") if poison["on"] else loss

    al = make_aligner("gradvac", beta=0.5)
    step = DualPathStep(model, loss_fn, opt, al)
    x, xa, y = toy_batch(3)
    step(x, xa, y)  # one good step so Adam has state
    weights = copy.deepcopy(model.state_dict())
    opt_state = copy.deepcopy(opt.state_dict())
    phi_hat = al.state_dict()["phi_hat"].clone()
    poison["on"] = True
    h = step(x, xa, y).to_host()
    assert h["skipped"] is True
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k])
    after = opt.state_dict()
    for i, st in opt_state["state"].items():
        for k, v in st.items():
            assert torch.equal(after["state"][i][k], v)
    assert torch.equal(al.state_dict()["phi_hat"], phi_hat)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    poison["on"] = False
    assert step(x, xa, y).to_host()["skipped"] is False


def test_frozen_parameters_are_excluded() -> None:
    model = tiny_mlp()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    x, xa, y = toy_batch(4)
    go, ga, res = _ref_update(model, x, xa, y, "pcgrad", "layer", "separate")
    step, _ = _sgd_step(model, "pcgrad", "layer")
    step(x, xa, y)
    assert "0.weight" not in step.layer_names and len(step.layer_names) == 5
    assert model[0].weight.grad is None and torch.equal(model[0].weight, frozen)
    torch.testing.assert_close(step.grad_buffers()[1], res.update, rtol=1e-5, atol=1e-6)


class _PathDependent(nn.Module):
    """Uses ``extra`` only for large inputs (the aug path below); ``unused`` never gets a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny_mlp()
        self.extra = nn.Parameter(torch.tensor([0.3, -0.2]))
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + self.extra if x.abs().max() > 50 else out


def test_parameters_without_gradient_from_a_path_count_as_zero() -> None:
    model = _PathDependent()
    x, _, y = toy_batch(5)
    xa = 100 * x
    for rule in ("pcgrad", "cagrad"):
        m = copy.deepcopy(model)
        go, ga, res = _ref_update(m, x, xa, y, rule, "layer", "separate")
        step, _ = _sgd_step(m, rule, "layer")
        h = step(x, xa, y).to_host()
        names = step.layer_names
        i_extra, i_unused = names.index("extra"), names.index("unused")
        assert h["layer_norm_orig"][i_extra] == 0.0 and h["layer_norm_aug"][i_extra] > 0
        assert h["layer_cos"][i_extra] == 0.0 and h["layer_norm_aug"][i_unused] == 0.0
        torch.testing.assert_close(step.grad_buffers()[1], res.update, rtol=1e-5, atol=1e-6)
        assert torch.equal(m.unused.detach(), torch.ones(3))


@pytest.mark.parametrize("rule", ["pcgrad", "cagrad"])
def test_clipping_applies_after_alignment(rule: str) -> None:
    model = tiny_mlp()
    x, xa, y = toy_batch(6)
    _, _, res = _ref_update(model, x, xa, y, rule, "model", "separate")
    clip = 0.25 * float(res.update.norm())
    step, _ = _sgd_step(model, rule, clip_norm=clip)
    h = step(x, xa, y).to_host()
    ref = res.update.clone()
    p = nn.Parameter(torch.zeros_like(ref))
    p.grad = ref
    torch.nn.utils.clip_grad_norm_([p], clip)
    torch.testing.assert_close(step.grad_buffers()[1], ref, rtol=1e-5, atol=1e-7)
    assert h["update_norm"] == pytest.approx(float(res.update.norm()), rel=1e-5)  # before clipping


def _run(scaler, steps: int = 3, nan_at: int | None = None):
    model = tiny_mlp(seed=7)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    step = DualPathStep(model, LOSS, opt, make_aligner("cagrad", granularity="layer"), clip_norm=1.0, scaler=scaler)
    out = []
    for i in range(steps):
        x, xa, y = toy_batch(10 + i)
        if nan_at == i:
            xa = xa.clone()
            xa[0, 0] = float("nan")
        out.append(step(x, xa, y).to_host())
    return model, out


def test_grad_scaler_path_equals_fp32_path() -> None:
    m32, h32 = _run(None)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    mamp, hamp = _run(scaler)
    for a, b in zip(m32.parameters(), mamp.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(h32, hamp):
        for k in ("norm_orig", "norm_aug", "update_norm", "cos", "cos_update_orig"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-7)
        torch.testing.assert_close(torch.tensor(a["layer_norm_aug"]), torch.tensor(b["layer_norm_aug"]), rtol=1e-5, atol=1e-7)


def test_grad_scaler_skips_non_finite_step_and_lowers_scale() -> None:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    _, hist = _run(scaler, steps=2, nan_at=1)
    assert [h["skipped"] for h in hist] == [False, True]
    assert scaler.get_scale() == 2.0**11
    # the skipped step left the weights where the fp32 run is after its first step
    m_ref, _ = _run(None, steps=1)
    m_amp, _ = _run(torch.amp.GradScaler("cpu", init_scale=2.0**12), steps=2, nan_at=1)
    for a, b in zip(m_ref.parameters(), m_amp.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_reduce_fn_sees_both_paths_in_one_buffer() -> None:
    model = tiny_mlp()
    x, xa, y = toy_batch(8)
    calls = []

    def reduce_fn(buf: torch.Tensor) -> None:  # stands in for all_reduce(SUM) over 2 equal workers
        calls.append(buf.shape)
        buf.mul_(2)

    ref, _ = _sgd_step(copy.deepcopy(model), "pcgrad")
    ref(x, xa, y)
    step, _ = _sgd_step(model, "pcgrad", reduce_fn=reduce_fn)
    step(x, xa, y)
    n = sum(p.numel() for p in model.parameters())
    assert calls == [torch.Size([2, n])]
    torch.testing.assert_close(step.grad_buffers()[1], 2 * ref.grad_buffers()[1])


def test_zero_grad_set_to_none_between_steps_is_repaired() -> None:
    model = tiny_mlp()
    step, opt = _sgd_step(model, "mgda")
    x, xa, y = toy_batch(9)
    step(x, xa, y)
    opt.zero_grad(set_to_none=True)
    ref, _ = _sgd_step(copy.deepcopy(model), "mgda")
    step(x, xa, y)
    ref(x, xa, y)
    torch.testing.assert_close(step.grad_buffers()[1], ref.grad_buffers()[1])
    assert model[0].weight.grad.data_ptr() == step.grad_buffers()[1].data_ptr()


def test_plain_da_and_single_path_steps() -> None:
    model = tiny_mlp()
    ref = copy.deepcopy(model)
    x, xa, y = toy_batch(11)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    h = plain_da_step(model, LOSS, opt, x, xa, y).to_host()
    loss = LOSS(ref(torch.cat([x, xa])), torch.cat([y, y]))
    g = _flat_grads(loss, list(ref.parameters()))
    assert h["update_norm"] == pytest.approx(float(g.norm()), rel=1e-5)
    assert (h["loss_orig"] + h["loss_aug"]) / 2 == pytest.approx(float(loss.detach()), rel=1e-6)
    for p, q, gg in zip(model.parameters(), ref.parameters(), g.split([p.numel() for p in ref.parameters()])):
        torch.testing.assert_close(p.detach(), q.detach() - 0.1 * gg.view_as(q))
    assert h["cos"] != h["cos"] and h["conflict"] is False  # one gradient: nothing to compare
    h1 = single_path_step(model, LOSS, opt, x, y, clip_norm=1e-3).to_host()
    assert h1["skipped"] is False and h1["loss_aug"] != h1["loss_aug"]  # NaN
    grads = [p.grad for p in model.parameters()]
    total = torch.cat([g.reshape(-1) for g in grads]).norm()
    assert float(total) == pytest.approx(1e-3, rel=1e-4)
    # same keys and layer order as the dual-path step (telemetry takes either)
    dual_keys = set(_sgd_step(copy.deepcopy(model))[0](x, xa, y).to_host())
    assert set(h1) == set(h) == dual_keys
    assert len(h1["layer_norm_orig"]) == len(grads)
    scale = 1e-3 / h1["update_norm"]  # norms are before clipping
    torch.testing.assert_close(torch.tensor(h1["layer_norm_orig"], dtype=torch.float64) * scale, torch.stack([g.double().norm() for g in grads]), rtol=1e-4, atol=1e-9)
    before = copy.deepcopy(model.state_dict())
    bad = x.clone()
    bad[0, 0] = float("inf")
    assert plain_da_step(model, LOSS, opt, bad, xa, y).to_host()["skipped"] is True
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_user_errors() -> None:
    model = tiny_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UserError, match=r"^align\.mode: 'fused' is not one of separate, joint, batched$"):
        DualPathStep(model, LOSS, opt, make_aligner("none"), mode="fused")
    with pytest.raises(UserError, match=r"^optim\.clip_norm: 0 must be > 0$"):
        DualPathStep(model, LOSS, opt, make_aligner("none"), clip_norm=0)
    step = DualPathStep(model, nn.CrossEntropyLoss(reduction="none"), opt, make_aligner("none"))
    x, xa, y = toy_batch()
    with pytest.raises(UserError, match="scalar"):
        step(x, xa, y)
    frozen = tiny_mlp()
    frozen.requires_grad_(False)
    with pytest.raises(UserError, match="no trainable"):
        DualPathStep(frozen, LOSS, opt, make_aligner("none"))


def test_bf16_autocast_runs_close_to_fp32() -> None:
    x, xa, y = toy_batch(12)
    s32, _ = _sgd_step(tiny_mlp(), "pcgrad", "layer")
    s16, _ = _sgd_step(tiny_mlp(), "pcgrad", "layer", autocast_dtype=torch.bfloat16)
    h32, h16 = s32(x, xa, y).to_host(), s16(x, xa, y).to_host()
    assert h16["skipped"] is False
    assert h16["cos"] == pytest.approx(h32["cos"], abs=0.05)
    assert h16["update_norm"] == pytest.approx(h32["update_norm"], rel=0.05)
    assert s16.grad_buffers().dtype == torch.float32


def test_single_path_reduce_fn_is_one_call_on_all_gradients() -> None:
    model, ref = tiny_mlp(), tiny_mlp()
    x, _, y = toy_batch(13)
    calls = []

    def reduce_fn(flat: torch.Tensor) -> None:
        calls.append(flat.shape)
        flat.mul_(2)

    h_ref = single_path_step(ref, LOSS, torch.optim.SGD(ref.parameters(), lr=0.0), x, y).to_host()
    h = single_path_step(model, LOSS, torch.optim.SGD(model.parameters(), lr=0.0), x, y, reduce_fn=reduce_fn).to_host()
    assert calls == [torch.Size([sum(p.numel() for p in model.parameters())])]
    assert h["update_norm"] == pytest.approx(2 * h_ref["update_norm"], rel=1e-6)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, 2 * q.grad)


@pytest.mark.parametrize("kind", ["separate", "joint", "single", "plain_da"])
def test_a_skipped_step_leaves_batchnorm_statistics_as_they_were(kind: str) -> None:
    """A finite but enormous input (a file with samples around 1e30) overflows the forward pass:
    the step is skipped, and the running statistics it had already written are put back."""
    model = tiny_mlp(bn=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, xa, y = toy_batch(4)
    loud = x.clone()
    loud[0] = 1e30

    def run(a, b):
        if kind in ("separate", "joint"):
            return DualPathStep(model, LOSS, opt, make_aligner("pcgrad"), mode=kind)(a, b, y)
        if kind == "single":
            return single_path_step(model, LOSS, opt, a, y)
        return plain_da_step(model, LOSS, opt, a, b, y)

    assert run(x, xa).to_host()["skipped"] is False
    before = copy.deepcopy(model.state_dict())
    assert run(loud, xa).to_host()["skipped"] is True
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert run(x, xa).to_host()["skipped"] is False
    model.eval()
    assert torch.isfinite(model(x)).all()
