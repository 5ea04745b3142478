"""The alignment rules for P path gradients (dpda.align.multipath): two paths are bit for bit the
aligner's numbers; PCGrad and GradVac equal LibMTL's implementations to float64 rounding; MGDA and
CAGrad reach LibMTL's solution or a better one (fixture: tests/fixtures/libmtl/README.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest
import torch

from dpda.align import RULES, Rule, make_aligner, register_rule
from dpda.align import path_rules
from dpda.align import rules as R
from dpda.align.multipath import check_paths, draw_order, path_coeffs
from dpda.align.registry import get_rule
from dpda.align.segments import PairDots
from dpda.errors import UserError

D = torch.float64
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "libmtl" / "libmtl_fixtures.pt"
BUILTIN = ("none", "pcgrad", "gradvac", "cagrad", "mgda")


def _grams(units: int, p: int, seed: int, dim: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Random path gradients (U, P, dim), half of them conflicting, and their Gram matrices."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(units, 1, dim, generator=gen, dtype=D)
    signs = torch.where(torch.rand(units, p, 1, generator=gen, dtype=D) < 0.5, -1.0, 1.0)
    g = signs * base + torch.randn(units, p, dim, generator=gen, dtype=D)
    g = g * torch.logspace(-3, 3, units, dtype=D)[:, None, None]
    return g, g @ g.transpose(1, 2)


def _options(rule: str, **given):
    return get_rule(rule).parse_options(given)


# ------------------------------------------------------------------------------ two paths
@pytest.mark.parametrize("rule", BUILTIN)
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_two_paths_are_the_aligners_coefficients_bit_for_bit(rule: str, strength: float) -> None:
    opts = {"beta": 0.3} if rule == "gradvac" else {"c": 0.7} if rule == "cagrad" else {}
    aligner = make_aligner(rule, strength=strength, granularity="layer", **opts)
    state: dict = {}
    for step in range(4):
        _, gram = _grams(9, 2, seed=step)
        gram[0] = 0.0  # a zero unit
        dots = PairDots(gram[:, 0, 0].clone(), gram[:, 1, 1].clone(), gram[:, 0, 1].clone())
        valid = torch.tensor(step != 2)  # a non-finite step leaves GradVac's target
        coeffs, _ = aligner.solve(dots, valid=valid)
        c = path_coeffs(rule, gram, options=_options(rule, **opts), state=state, strength=strength, valid=valid)
        assert torch.equal(c[:, 0], coeffs.a) and torch.equal(c[:, 1], coeffs.b)
        if rule == "gradvac":
            assert torch.equal(state["phi_hat"], aligner.state_dict()["phi_hat"])


@pytest.mark.parametrize("seed", range(3))
def test_the_p_path_forms_at_two_paths_equal_the_two_path_rules(seed: int) -> None:
    """The general forms reduce to the closed forms (to rounding), whatever the order."""
    _, gram = _grams(6, 2, seed)
    oo, aa, oa = gram[:, 0, 0], gram[:, 1, 1], gram[:, 0, 1]
    order = draw_order(6, 2, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(path_rules.pcgrad_paths(gram, order), torch.stack(
        R.pcgrad_coeffs(oo, aa, oa), -1), rtol=1e-12, atol=0)
    phi_hat = torch.linspace(-0.5, 0.9, 6, dtype=D)
    target = phi_hat[:, None, None].expand(6, 2, 2).clone()
    c, _ = path_rules.gradvac_paths(gram, 0.1, False, target, torch.tensor([True]), order)
    torch.testing.assert_close(c, torch.stack(R.gradvac_coeffs(oo, aa, oa, phi_hat), -1),
                               rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(path_rules.mgda_paths(gram), torch.stack(
        R.mgda_coeffs(oo, aa, oa), -1), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(path_rules.cagrad_paths(gram, 0.5), torch.stack(
        R.cagrad_coeffs(oo, aa, oa, 0.5), -1), rtol=1e-8, atol=1e-10)


# ------------------------------------------------------------------------------ LibMTL
@lru_cache(maxsize=1)
def _fixture() -> dict:
    return torch.load(FIXTURE, weights_only=True)


def _fixture_cases(*methods: str) -> list[dict]:
    return [c for c in _fixture()["cases"] if c["method"] in methods]


def _replay(case: dict) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """dpda on a fixture case, step by step: (gradients, Gram per unit, dpda's update)."""
    rule = case["method"]
    opts = {k: v for k, v in case["options"].items() if k != "group_type"}
    options = _options(rule, **opts)
    bounds = torch.tensor([0, *case["segments"]]).cumsum(0).tolist()
    state: dict = {}
    out = []
    for t, g in enumerate(case["grads"]):
        parts = [g[:, lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]
        gram = torch.stack([x @ x.T for x in parts])
        order = case["order"][t] if case["order"].numel() else None
        c = path_coeffs(rule, gram, options=options, state=state, order=order)
        update = torch.cat([c[u] @ parts[u] for u in range(len(parts))])
        out.append((g, gram, update))
    return out


@pytest.mark.parametrize("method", ["pcgrad", "gradvac"])
def test_pcgrad_and_gradvac_equal_libmtl_to_float64_rounding(method: str) -> None:
    """LibMTL sums the adjusted gradients, dpda averages them: LibMTL's update is P times dpda's."""
    cases = _fixture_cases(method)
    assert {c["paths"] for c in cases} == {2, 3, 4, 5} and len(cases) >= 24
    for case in cases:
        for (g, _, update), ref in zip(_replay(case), case["update"]):
            err = (update * case["paths"] - ref).norm() / g.norm(dim=1).max()
            assert err < 1e-13, (case["kind"], case["paths"], float(err))


def _cagrad_objective(gram: torch.Tensor, w: torch.Tensor, c: float) -> torch.Tensor:
    """LibMTL's CAGrad dual g_w.g0 + c|g0||g_w|, on G / max |g_p|^2."""
    g = gram / gram.diagonal().max()
    return w @ g.mean(1) + c * g.mean().sqrt() * (w @ g @ w).clamp_min(0).sqrt()


def test_mgda_reaches_libmtls_min_norm_or_lower_and_the_same_update() -> None:
    """LibMTL's Frank-Wolfe stops at a change below 1e-5 and clips two-task weights to
    [0.001, 0.999]; dpda's enumeration is exact, so its norm is never above LibMTL's."""
    for case in _fixture_cases("mgda"):
        (g, gram, update), = _replay(case)
        w_lib = case["weights"][0]
        scale = gram[0].diagonal().max()
        ours, theirs = update @ update / scale, w_lib @ gram[0] @ w_lib / scale
        assert ours <= theirs + 1e-13, (case["kind"], case["paths"])
        assert theirs - ours < 1e-3
        err = (update - case["update"][0]).norm() / g.norm(dim=1).max()
        assert err < 2e-3, (case["kind"], case["paths"], float(err))


def test_cagrad_reaches_libmtls_dual_objective_or_lower() -> None:
    """LibMTL solves the dual with SciPy's SLSQP (ftol 1e-6); dpda's solution is exact, so its
    objective is never above LibMTL's, and the updates agree where the problem is well posed
    (not the sets whose norms spread over 10 decades, nor those whose hull holds 0)."""
    for case in _fixture_cases("cagrad"):
        c = case["options"]["c"]
        (g, gram, update), = _replay(case)
        w_ours = path_rules.cagrad_weights(gram, c)[0]
        ours, theirs = _cagrad_objective(gram[0], w_ours, c), _cagrad_objective(gram[0], case["weights"][0], c)
        assert ours <= theirs + 1e-13, (case["kind"], case["paths"])
        assert theirs - ours < 1e-4
        if case["kind"] in ("conflict", "aligned", "tiny", "large"):
            err = (update - case["update"][0]).norm() / g.norm(dim=1).max()
            assert err < 1e-3, (case["kind"], case["paths"], float(err))


# ------------------------------------------------------------------------------ optimality
@pytest.mark.parametrize("p", [3, 4, 5])
def test_mgda_weights_meet_the_optimality_conditions(p: int) -> None:
    """min_k (G w)_k = w^T G w at the min-norm point (the Frank-Wolfe gap is 0), rank-deficient
    sets (more paths than dimensions) included."""
    for dim in (2, 12):
        _, gram = _grams(20, p, seed=p, dim=dim)
        w = path_rules.mgda_weights(gram)
        assert torch.all(w >= 0) and torch.allclose(w.sum(-1), torch.ones(20, dtype=D))
        gw = torch.einsum("uij,uj->ui", gram, w)
        gap = ((w * gw).sum(-1) - gw.min(-1).values) / gram.diagonal(dim1=1, dim2=2).amax(-1)
        assert gap.abs().max() < 1e-12


@pytest.mark.parametrize("c", [0.0, 0.5, 2.0])
def test_cagrad_weights_beat_every_sampled_simplex_point(c: float) -> None:
    gen = torch.Generator().manual_seed(7)
    for p, dim in ((3, 12), (5, 12), (5, 3)):
        _, gram = _grams(8, p, seed=p + dim, dim=dim)
        w = path_rules.cagrad_weights(gram, c)
        samples = torch.distributions.Dirichlet(torch.full((p,), 0.3, dtype=D)).sample((8, 4000))
        g = gram / gram.diagonal(dim1=1, dim2=2).amax(-1)[:, None, None]
        h, kappa = g.mean(-1), c * g.mean((1, 2)).sqrt()

        def f(x: torch.Tensor) -> torch.Tensor:
            return (x * h[:, None]).sum(-1) + kappa[:, None] * torch.einsum("uni,uij,unj->un", x, g, x).clamp_min(0).sqrt()

        assert torch.all(f(w[:, None])[:, 0] <= f(samples).min(1).values + 1e-12)


# ------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("rule", BUILTIN)
def test_p_paths_strength_scale_and_seed(rule: str) -> None:
    """Strength blends with 1/P; coefficients ignore the gradients' scale; a seed fixes the orders."""
    _, gram = _grams(5, 4, seed=3)
    opts = _options(rule)

    def run(g: torch.Tensor, strength: float = 1.0, seed: int = 0) -> torch.Tensor:
        return path_coeffs(rule, g, options=opts, state={}, strength=strength,
                           generator=torch.Generator().manual_seed(seed))

    full = run(gram)
    assert full.shape == (5, 4) and full.dtype == D
    torch.testing.assert_close(run(gram, 0.3), 0.7 / 4 + 0.3 * full, rtol=0, atol=1e-15)
    torch.testing.assert_close(run(gram * 4.0**20), full, rtol=1e-9, atol=1e-12)
    assert torch.equal(run(gram, seed=5), run(gram, seed=5))
    if rule == "none":
        assert torch.equal(full, torch.full((5, 4), 0.25, dtype=D))


def test_orders_are_permutations_drawn_from_the_generator() -> None:
    order = draw_order(50, 5, torch.Generator().manual_seed(1))
    assert torch.equal(order.sort(-1).values, torch.arange(5).expand(50, 5, 5))
    assert not torch.equal(order, draw_order(50, 5, torch.Generator().manual_seed(2)))
    assert torch.equal(draw_order(2, 3, None), torch.arange(3).expand(2, 3, 3))


def test_pcgrad_order_matters_and_removes_conflict_with_the_last_gradient() -> None:
    """After task i's last projection, pc_i no longer conflicts with that (original) gradient."""
    g, gram = _grams(30, 4, seed=11)
    order = draw_order(30, 4, torch.Generator().manual_seed(0))
    u, p, _ = gram.shape
    m = torch.eye(p, dtype=D).expand(u, p, p).clone()
    for t in range(p):  # the definition, one unit and task at a time
        for uu in range(u):
            for i in range(p):
                j = int(order[uu, i, t])
                pc = m[uu, i] @ g[uu]
                d = pc @ g[uu, j]
                if d < 0:
                    m[uu, i, j] -= d / (g[uu, j] @ g[uu, j])
    torch.testing.assert_close(path_rules.pcgrad_paths(gram, order), m.mean(1), rtol=1e-12, atol=1e-15)


def test_gradvac_targets_per_ordered_pair_and_held_on_invalid_steps() -> None:
    _, gram = _grams(3, 4, seed=5)
    opts, state = _options("gradvac", beta=0.5), {}
    path_coeffs("gradvac", gram, options=opts, state=state, generator=torch.Generator().manual_seed(0))
    target = state["phi_hat"]
    assert target.shape == (3, 4, 4) and torch.all(target.diagonal(dim1=1, dim2=2) == 0)
    assert torch.any(target != 0)
    path_coeffs("gradvac", gram, options=opts, state=state, valid=torch.tensor(False),
                generator=torch.Generator().manual_seed(0))
    assert torch.equal(state["phi_hat"], target)
    with pytest.raises(UserError, match=r"gradvac state has shape \(3, 4, 4\) .* \(3, 3, 3\); wrong checkpoint"):
        path_coeffs("gradvac", gram[:, :3, :3], options=opts, state=state)


@pytest.fixture
def two_path_rule():
    rule = register_rule(Rule("twoonly", "toy: g_orig", lambda oo, aa, oa, options, state, finite:
                              (torch.ones_like(oo), torch.zeros_like(oo), None)))
    yield rule
    del RULES["twoonly"]


def test_a_rule_without_a_p_path_form_says_so(two_path_rule) -> None:
    for rule in BUILTIN:
        check_paths(rule, 5)
    check_paths("twoonly", 2)
    _, gram = _grams(2, 2, seed=0)
    assert torch.equal(path_coeffs("twoonly", gram, options=None, state={}),
                       torch.tensor([[1.0, 0.0]] * 2, dtype=D))
    with pytest.raises(UserError, match=r"^align\.rule: twoonly has no form for more than 2 paths \(got 3\); "
                                        r"use one of none, pcgrad, gradvac, cagrad, mgda$"):
        check_paths("twoonly", 3)
    with pytest.raises(UserError, match=r"^align\.rule: mgda aligns at least 2 paths, got 1$"):
        check_paths("mgda", 1)
