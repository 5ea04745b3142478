"""Alignment rules against their definitions (hand-built and random vectors), stats and state."""

from __future__ import annotations

import io

import pytest
import torch

from dpda.align import RULES, Segments, combine_, make_aligner, segment_dots
from dpda.align import rules as R
from dpda.errors import UserError

D = torch.float64


def _cos(u: torch.Tensor, v: torch.Tensor) -> float:
    nu, nv = u.norm(), v.norm()
    return 0.0 if nu == 0 or nv == 0 else max(-1.0, min(1.0, float(u @ v / (nu * nv))))


# ---------------------------------------------------------------- reference rules (from the brief)
def ref_pcgrad(go, ga):
    def proj(gi, gj):
        d = gi @ gj
        return gi - d / (gj @ gj) * gj if d < 0 else gi

    return (proj(go, ga) + proj(ga, go)) / 2


def ref_gradvac(go, ga, phi_hat=0.0):
    def adj(gi, gj):
        phi = _cos(gi, gj)
        if phi < phi_hat and gj.norm() > 0:
            k = phi_hat * (1 - phi**2) ** 0.5 - phi * (1 - phi_hat**2) ** 0.5
            return gi + gj * gi.norm() * k / (gj.norm() * (1 - phi_hat**2) ** 0.5)
        return gi

    return (adj(go, ga) + adj(ga, go)) / 2


def ref_cagrad(go, ga, c=0.5, n=200001):
    g0 = (go + ga) / 2
    w = torch.linspace(0, 1, n, dtype=D)[:, None]
    gw = w * go + (1 - w) * ga
    f = gw @ g0 + c * g0.norm() * gw.norm(dim=1)
    gwb = gw[f.argmin()]
    lam = c * g0.norm() / gwb.norm() if gwb.norm() > 0 else 0.0
    return (g0 + lam * gwb) / (1 + c**2)


def ref_mgda(go, ga):
    dd = (go - ga) @ (go - ga)
    alpha = 0.5 if dd == 0 else float(((ga - go) @ ga / dd).clamp(0, 1))
    return alpha * go + (1 - alpha) * ga


REF = {
    "none": lambda go, ga: (go + ga) / 2,
    "pcgrad": ref_pcgrad,
    "gradvac": ref_gradvac,
    "cagrad": ref_cagrad,
    "mgda": ref_mgda,
}

CASES = {
    "orthogonal": ([1.0, 0.0, 0.0], [0.0, 2.0, 0.0]),
    "conflicting": ([1.0, 0.2, 0.0], [-0.8, 0.5, 0.1]),
    "opposite": ([1.0, 2.0, -1.0], [-1.0, -2.0, 1.0]),
    "aligned": ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]),
    "identical": ([0.3, -0.2, 0.5], [0.3, -0.2, 0.5]),
    "zero": ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    "one_zero": ([0.0, 0.0, 0.0], [1.0, -2.0, 0.5]),
    "other_zero": ([1.0, -2.0, 0.5], [0.0, 0.0, 0.0]),
}


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("case", CASES)
def test_rule_matches_definition(rule: str, case: str) -> None:
    go, ga = (torch.tensor(v, dtype=D) for v in CASES[case])
    res = make_aligner(rule)(go, ga)
    assert torch.isfinite(res.update).all()
    atol = 2e-5 if rule == "cagrad" else 1e-12  # the reference CAGrad is a grid search
    torch.testing.assert_close(res.update, REF[rule](go, ga), atol=atol, rtol=1e-5)
    s = res.stats
    assert float(s.cos) == pytest.approx(_cos(go, ga), abs=1e-12)
    assert bool(s.conflict) == (_cos(go, ga) < 0)
    assert float(s.update_norm) == pytest.approx(float(res.update.norm()), abs=1e-9)
    assert float(s.cos_update_orig) == pytest.approx(_cos(res.update, go), abs=1e-7)
    assert float(s.cos_update_aug) == pytest.approx(_cos(res.update, ga), abs=1e-7)
    assert bool(s.finite)


def test_zero_gradients_give_documented_values() -> None:
    z = torch.zeros(4, dtype=D)
    for rule in RULES:
        res = make_aligner(rule)(z, z)
        assert float(res.stats.cos) == 0.0 and float(res.stats.update_norm) == 0.0
        assert torch.equal(res.update, z)


@pytest.mark.parametrize("seed", range(5))
def test_pcgrad_projection_removes_conflict(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(50, generator=g, dtype=D)
    ga = -go + 0.3 * torch.randn(50, generator=g, dtype=D)  # strongly conflicting
    oo, aa, oa = go @ go, ga @ ga, go @ ga
    assert oa < 0
    m00, m01, m10, m11 = R.pcgrad_task_coeffs(oo.reshape(1), aa.reshape(1), oa.reshape(1))
    po = m00 * go + m01 * ga
    pa = m10 * go + m11 * ga
    assert float(po @ ga) >= -1e-10 and float(pa @ go) >= -1e-10
    torch.testing.assert_close(make_aligner("pcgrad")(go, ga).update, (po + pa) / 2)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("c", [0.0, 0.2, 0.5, 2.0])
def test_cagrad_weight_matches_grid(seed: int, c: float) -> None:
    g = torch.Generator().manual_seed(seed)
    go = torch.randn(8, generator=g, dtype=D) * (1 + seed % 3)
    ga = torch.randn(8, generator=g, dtype=D) - (seed % 2) * go
    oo, aa, oa = (t.reshape(1) for t in (go @ go, ga @ ga, go @ ga))
    w = float(R.cagrad_weight(oo, aa, oa, c))
    grid = torch.linspace(0, 1, 100001, dtype=D)[:, None]
    g0 = (go + ga) / 2
    gw = grid * go + (1 - grid) * ga
    f = gw @ g0 + c * g0.norm() * gw.norm(dim=1)
    ws = w * go + (1 - w) * ga
    f_star = float(ws @ g0 + c * g0.norm() * ws.norm())
    assert 0.0 <= w <= 1.0
    assert f_star <= float(f.min()) + 1e-9 * (1 + abs(float(f.min())))
    if c > 0:  # strictly convex enough that the minimiser itself is pinned down
        assert w == pytest.approx(float(grid[f.argmin()]), abs=2e-3)


def test_gradvac_reaches_target_and_tracks_ema() -> None:
    go = torch.tensor([1.0, 0.0, 0.0], dtype=D)
    ga = torch.tensor([-0.5, 1.0, 0.0], dtype=D)
    phi = _cos(go, ga)
    target = 0.3
    m00, m01, m10, m11 = R.gradvac_task_coeffs(*(t.reshape(1) for t in (go @ go, ga @ ga, go @ ga)), torch.tensor([target], dtype=D))
    # Each adjusted gradient has exactly the target similarity with the other original one.
    assert _cos(m00 * go + m01 * ga, ga) == pytest.approx(target, abs=1e-12)
    assert _cos(m10 * go + m11 * ga, go) == pytest.approx(target, abs=1e-12)

    beta = 0.2
    al = make_aligner("gradvac", beta=beta)
    phi_hat = 0.0
    for _ in range(4):  # phi < 0 = phi_hat at first, so the update moves; phi_hat follows the EMA
        res = al(go, ga)
        torch.testing.assert_close(res.update, ref_gradvac(go, ga, phi_hat))
        phi_hat = (1 - beta) * phi_hat + beta * phi
        assert float(al.state_dict()["phi_hat"]) == pytest.approx(phi_hat, abs=1e-12)
    # Aligned gradients above the target are left alone (update == mean) but still move the EMA.
    res = al(go, 2 * go)
    torch.testing.assert_close(res.update, 1.5 * go)
    assert float(al.state_dict()["phi_hat"]) == pytest.approx((1 - beta) * phi_hat + beta, abs=1e-12)


def test_gradvac_positive_only_update_like_dpda_code() -> None:
    al = make_aligner("gradvac", beta=0.5, positive_only_update=True)
    go = torch.tensor([1.0, 0.0], dtype=D)
    al(go, torch.tensor([-1.0, 1.0], dtype=D))  # phi < 0: target stays 0
    assert float(al.state_dict()["phi_hat"]) == 0.0
    al(go, torch.tensor([1.0, 1.0], dtype=D))  # phi = 0.7071 > 0: EMA with beta 0.5
    assert float(al.state_dict()["phi_hat"]) == pytest.approx(0.5 * 2**-0.5)


def test_gradvac_layer_state_per_segment_and_round_trip() -> None:
    g = torch.Generator().manual_seed(3)
    seg = Segments((4, 6, 5))
    go, ga = torch.randn(15, generator=g, dtype=D), torch.randn(15, generator=g, dtype=D)
    al = make_aligner("gradvac", granularity="layer", beta=0.3)
    al(go, ga, seg)
    buf = io.BytesIO()
    torch.save(al.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert state["phi_hat"].shape == (3,)
    al2 = make_aligner("gradvac", granularity="layer", beta=0.3)
    al2.load_state_dict(state)
    torch.testing.assert_close(al(go, ga, seg).update, al2(go, ga, seg).update)
    torch.testing.assert_close(al.state_dict()["phi_hat"], al2.state_dict()["phi_hat"])
    with pytest.raises(UserError, match="gradvac"):
        make_aligner("gradvac", granularity="layer", beta=0.3).load_state_dict({**state, "rule": "pcgrad"})
    wrong = make_aligner("gradvac", granularity="layer", beta=0.3)
    wrong.load_state_dict(state)
    with pytest.raises(UserError, match="3 targets"):
        wrong(go, ga, Segments((15,)))


@pytest.mark.parametrize("seed", range(5))
def test_mgda_is_min_norm_point(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    go, ga = torch.randn(6, generator=g, dtype=D), torch.randn(6, generator=g, dtype=D)
    d = make_aligner("mgda")(go, ga).update
    grid = torch.linspace(0, 1, 10001, dtype=D)[:, None]
    norms = (grid * go + (1 - grid) * ga).norm(dim=1)
    assert float(d.norm()) <= float(norms.min()) + 1e-12
    # min-norm optimality: d . (g_i - d) >= 0 for both tasks when the optimum is interior or at g_i
    assert float(d @ go) >= float(d @ d) - 1e-9 and float(d @ ga) >= float(d @ d) - 1e-9


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("granularity", ["model", "layer"])
def test_strength_blends_with_mean(rule: str, granularity: str) -> None:
    g = torch.Generator().manual_seed(1)
    seg = Segments((3, 9, 4))
    go = torch.randn(16, generator=g, dtype=D)
    ga = torch.randn(16, generator=g, dtype=D) - 0.8 * go
    mean = (go + ga) / 2
    torch.testing.assert_close(make_aligner(rule, 0.0, granularity)(go, ga, seg).update, mean)
    full = make_aligner(rule, 1.0, granularity)(go, ga, seg).update
    part = make_aligner(rule, 0.3, granularity)(go, ga, seg).update
    torch.testing.assert_close(part, 0.7 * mean + 0.3 * full)


@pytest.mark.parametrize("rule", RULES)
def test_layer_equals_model_for_single_layer(rule: str) -> None:
    g = torch.Generator().manual_seed(2)
    go, ga = torch.randn(40, generator=g), torch.randn(40, generator=g)
    seg = Segments.single(40)
    a = make_aligner(rule, granularity="model")(go, ga, seg)
    b = make_aligner(rule, granularity="layer")(go, ga, seg)
    torch.testing.assert_close(a.update, b.update)


@pytest.mark.parametrize("rule", RULES)
def test_layer_wise_equals_rule_per_segment(rule: str) -> None:
    # Sizes mix big tensors (own chunk) and runs of small ones (segment_reduce), float32 buffers.
    sizes = [5, 9000, 3] + [37] * 60 + [20000, 1, 7, 4096, 700]
    seg = Segments(tuple(sizes))
    g = torch.Generator().manual_seed(4)
    n = seg.numel
    go = torch.randn(n, generator=g)
    ga = torch.randn(n, generator=g) - 0.5 * go
    ga[9005:9008] = 0.0  # a layer with no gradient from one path
    res = make_aligner(rule, granularity="layer")(go, ga, seg)
    parts, layer_cos = [], []
    off = 0
    for s in sizes:
        o, a = go[off : off + s].double(), ga[off : off + s].double()
        parts.append(make_aligner(rule)(o, a).update)
        layer_cos.append(_cos(o, a))
        off += s
    torch.testing.assert_close(res.update.double(), torch.cat(parts), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(res.stats.layer_cos, torch.tensor(layer_cos, dtype=D), atol=1e-5, rtol=0)
    torch.testing.assert_close(res.stats.layer_norm_orig, torch.stack([p.double().norm() for p in go.split(sizes)]), rtol=1e-5, atol=0)
    assert float(res.stats.cos) == pytest.approx(_cos(go.double(), ga.double()), abs=1e-6)
    assert float(res.stats.update_norm) == pytest.approx(float(res.update.double().norm()), rel=1e-5)


def test_segment_dots_and_in_place_output() -> None:
    seg = Segments((3, 5000, 2, 2))
    g = torch.Generator().manual_seed(5)
    go, ga = torch.randn(seg.numel, generator=g), torch.randn(seg.numel, generator=g)
    dots = segment_dots(go, ga, seg)
    ref = [(o @ o, a @ a, o @ a) for o, a in zip(go.split(seg.sizes), ga.split(seg.sizes))]
    for i, d in enumerate(dots):
        torch.testing.assert_close(d, torch.stack([r[i] for r in ref]).double(), rtol=1e-5, atol=1e-6)
    al = make_aligner("pcgrad", granularity="layer")
    expected = al(go, ga, seg).update
    for alias in ("orig", "aug"):
        o, a = go.clone(), ga.clone()
        out = o if alias == "orig" else a
        al(o, a, seg, out=out)
        torch.testing.assert_close(out, expected)


def test_bad_names_and_values_raise_user_error() -> None:
    with pytest.raises(UserError, match="'sam'"):
        make_aligner("sam")
    with pytest.raises(UserError, match="beta"):
        make_aligner("pcgrad", beta=0.1)
    with pytest.raises(UserError, match="gamma"):
        make_aligner("cagrad", gamma=1.0)
    with pytest.raises(UserError, match="strength"):
        make_aligner("pcgrad", strength=1.5)
    with pytest.raises(UserError, match="granularity"):
        make_aligner("pcgrad", granularity="block")
    with pytest.raises(UserError, match="beta"):
        make_aligner("gradvac", beta=0.0)
    with pytest.raises(UserError, match="align.c"):
        make_aligner("cagrad", c=-1)
    assert make_aligner("CAGrad", c=0.2).options["c"] == 0.2
    assert make_aligner("gradvac").options == {"beta": 0.01, "positive_only_update": False}


def test_non_finite_gradient_flags_and_keeps_gradvac_state() -> None:
    al = make_aligner("gradvac", beta=0.5)
    go = torch.tensor([1.0, float("nan")], dtype=D)
    res = al(go, torch.tensor([1.0, 0.0], dtype=D))
    assert not bool(res.stats.finite)
    assert float(al.state_dict()["phi_hat"]) == 0.0


_B = 256  # dpda.align.segments.BLOCK


@pytest.mark.parametrize("sizes", [
    [7],  # shorter than a block: all of it in the partial last block
    [_B],  # exactly one block, no split
    [3 * _B, _B, 2 * _B],  # boundaries on block edges: nothing split
    [5, 3, 1, 1000, 2 * _B + 17, 1, _B - 1, 4 * _B, 30],  # many segments in one block, long ones crossing
    [_B + 1] * 5 + [2] * 40,  # split blocks touching each other; many tiny tensors in the last block
    [300_000, 9, 70_001, 64],  # several row chunks
])
def test_block_layout_dots_and_combine_equal_the_per_segment_reference(sizes: list[int]) -> None:
    """The block layout (pure rows, split blocks, partial last block) gives every segment's dots
    and per-segment update exactly as a loop over the segments would."""
    seg = Segments(tuple(sizes))
    g = torch.Generator().manual_seed(len(sizes))
    go = torch.randn(seg.numel, generator=g)
    ga = torch.randn(seg.numel, generator=g) - 0.3 * go
    dots = segment_dots(go, ga, seg)
    for i, (o, a) in enumerate(zip(go.double().split(sizes), ga.double().split(sizes))):
        torch.testing.assert_close(dots.oo[i], o @ o, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(dots.aa[i], a @ a, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(dots.oa[i], o @ a, rtol=1e-6, atol=1e-6 * float(o.norm() * a.norm()))
    ca = torch.linspace(-1.0, 2.0, len(sizes), dtype=D)
    cb = torch.linspace(0.5, -0.7, len(sizes), dtype=D)
    ref = torch.cat([x * o + y * a for x, y, o, a in zip(ca.float(), cb.float(), go.split(sizes), ga.split(sizes))])
    torch.testing.assert_close(combine_(go, ga, ca, cb, seg), ref)
    for which in ("orig", "aug"):  # in place: the output may alias either input
        o, a = go.clone(), ga.clone()
        out = o if which == "orig" else a
        combine_(o, a, ca, cb, seg, out=out)
        torch.testing.assert_close(out, ref)
