"""The alignment rules for P >= 2 path gradients, as coefficients computed from Gram matrices.

Each rule maps the Gram matrices G (U, P, P) of the P path gradients (one per unit: the whole
model or one parameter tensor) to coefficients c (U, P), the update of unit u being
sum_p c[u, p] g_p[u]; the parameter-sized buffers are never touched. The forms follow LibMTL's
K-task implementations (median-research-group/LibMTL, `LibMTL/weighting/`), with dpda's
conventions: PCGrad and GradVac average the adjusted gradients (LibMTL sums them: its update is
P times dpda's), and no 1e-8 guards in denominators (a zero denominator counts as zero, as in
``rules.safe_div``), so every rule is invariant to the scale of the gradients.

PCGrad and GradVac track each task's adjusted gradient as a row of a (P, P) coefficient matrix
on the original gradients, visiting the tasks in a per-task order (U, P, P) (a permutation of all
P tasks per row; GradVac skips the row's own task). MGDA and CAGrad are solved exactly by
enumerating the 2^P - 1 supports (see ``_supports``), so they cost 2^P small solves per unit.
Everything is batched tensor code on G's device: no host syncs, no SciPy.
"""

from __future__ import annotations

from functools import lru_cache
import torch

from dpda.align.rules import cosine, safe_div

FEASIBLE_TOL = 1e-10  # a support's weights may dip this far below 0 (scale-free units) before it is refused


def mean_paths(gram: torch.Tensor) -> torch.Tensor:
    """No alignment: 1/P each."""
    u, p, _ = gram.shape
    return torch.full((u, p), 1.0 / p, dtype=gram.dtype, device=gram.device)


def _column(gram: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """(U, P_i, P_k): gram[u, k, j[u, i]], the Gram column of the task row i is visiting."""
    u, p, _ = gram.shape
    return torch.gather(gram, 2, j[:, None, :].expand(u, p, p)).transpose(1, 2)


def pcgrad_paths(gram: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """PCGrad: each task i is projected, in its order order[u, i, :], off every ORIGINAL gradient
    g_j it conflicts with at that point (pc_i . g_j < 0; the row's own task included, as LibMTL
    does); the update is the mean of the projected gradients."""
    u, p, _ = gram.shape
    m = torch.eye(p, dtype=gram.dtype, device=gram.device).expand(u, p, p).clone()  # pc_i = m[i] . g
    diag = gram.diagonal(dim1=1, dim2=2)
    for t in range(p):
        j = order[..., t]
        d = (m * _column(gram, j)).sum(-1)  # pc_i . g_j
        step = torch.where(d < 0, -safe_div(d, diag.gather(1, j)), torch.zeros_like(d))
        m.scatter_add_(2, j[..., None], step[..., None])
    return m.mean(1)


def gradvac_paths(gram: torch.Tensor, beta: float, positive_only_update: bool, target: torch.Tensor,
                  finite: torch.Tensor, order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GradVac with a per-pair EMA target target[u, i, j]: task i, visiting the others in its
    order, raises cos(pc_i, g_j) to the target when below it (pc_i += w g_j, g_j original), and the
    target moves toward that cosine (measured before the adjustment). As in the two-path rule, a
    pair's target stays when a norm is 0, the step is not finite, or (published option) the
    cosine is <= 0. Returns (coefficients, new targets)."""
    u, p, _ = gram.shape
    m = torch.eye(p, dtype=gram.dtype, device=gram.device).expand(u, p, p).clone()
    diag = gram.diagonal(dim1=1, dim2=2)
    rows = torch.arange(p, device=gram.device)
    new_target = target.clone()
    for t in range(p):
        j = order[..., t]
        other = j != rows
        d = (m * _column(gram, j)).sum(-1)  # pc_i . g_j
        pp = torch.einsum("uik,ukl,uil->ui", m, gram, m).clamp_min(0)  # |pc_i|^2
        gg = diag.gather(1, j)
        rho = cosine(pp, gg, d)
        phi_hat = target.gather(2, j[..., None]).squeeze(-1)
        s_rho = torch.sqrt((1 - rho * rho).clamp_min(0))
        s_hat = torch.sqrt((1 - phi_hat * phi_hat).clamp_min(0)).clamp_min(1e-12)
        k = (phi_hat * s_rho - rho * s_hat) / s_hat
        w = safe_div(torch.sqrt(pp) * k, torch.sqrt(gg.clamp_min(0)))
        active = other & (rho < phi_hat)
        m.scatter_add_(2, j[..., None], torch.where(active, w, torch.zeros_like(w))[..., None])
        moves = other & (pp > 0) & (gg > 0) & finite
        if positive_only_update:
            moves = moves & (rho > 0)
        ema = torch.where(moves, (1 - beta) * phi_hat + beta * rho, phi_hat)
        new_target.scatter_(2, j[..., None], ema[..., None])
    return m.mean(1), new_target


@lru_cache(maxsize=None)
def _supports(p: int, device: str) -> torch.Tensor:
    """(2^p - 1, p) float64 0/1 masks of every non-empty subset of the p tasks.

    WHY enumerate: the min-norm point (MGDA) and CAGrad's dual optimum lie in the relative
    interior of one face of the simplex; on that face the optimality conditions are a small
    linear system with a closed-form solution. Solving all faces at once and keeping the best
    feasible candidate is exact (to the solves' rounding), has a fixed cost and needs no
    iteration count or stopping test."""
    codes = torch.arange(1, 2**p)[:, None]
    return ((codes >> torch.arange(p)) & 1).to(torch.float64).to(device)


def _scale_free(gram: torch.Tensor) -> torch.Tensor:
    """G / trace(G) per unit: the argmins below do not depend on the scale; the solves do."""
    tr = gram.diagonal(dim1=1, dim2=2).sum(-1)
    return safe_div(gram, tr[:, None, None])


def _masked(g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """(U, n, P, P): g restricted to each support, the identity outside it."""
    keep = s[:, :, None] * s[:, None, :]
    return g[:, None] * keep + torch.diag_embed(1 - s)


def _quad(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """w^T G w for candidates w (U, n, P)."""
    return torch.einsum("uni,uij,unj->un", w, g, w)


def _feasible(w: torch.Tensor, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates on the simplex (tiny negatives clipped, renormalised) and which ones count."""
    ok = ok & torch.isfinite(w.sum(-1)) & (w.amin(-1) >= -FEASIBLE_TOL)  # amin: NaN propagates
    w = torch.where(ok[..., None], w, torch.zeros_like(w)).clamp_min(0)
    total = w.sum(-1, keepdim=True)
    ok = ok & (total[..., 0] > 0.5)
    return safe_div(w, total), ok


def _best(w: torch.Tensor, objective: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """The candidate of least objective among those that count (U, n, P) -> (U, P)."""
    score = torch.where(ok, objective, torch.full_like(objective, torch.inf))
    best = score.argmin(1)
    return w.gather(1, best[:, None, None].expand(-1, 1, w.shape[-1])).squeeze(1)


def mgda_weights(gram: torch.Tensor) -> torch.Tensor:
    """argmin over the simplex of w^T G w (the min-norm point of the gradients' convex hull).

    On a support S the minimiser solves [[G_S, 1], [1^T, 0]] [w; -nu] = [0; 1], which is regular
    whenever the gradients of S are affinely independent; the optimum has such a support
    (Caratheodory), so the best feasible candidate over all supports is the optimum."""
    u, p, _ = gram.shape
    g = _scale_free(gram)
    s = _supports(p, str(gram.device)).to(gram.dtype)
    n = s.shape[0]
    kkt = gram.new_zeros(u, n, p + 1, p + 1)
    kkt[..., :p, :p] = _masked(g, s)
    kkt[..., :p, p] = s
    kkt[..., p, :p] = s
    rhs = gram.new_zeros(u, n, p + 1, 1)
    rhs[..., p, 0] = 1
    sol, info = torch.linalg.solve_ex(kkt, rhs)
    w, ok = _feasible(sol[..., :p, 0] * s, info == 0)
    return _best(w, _quad(w, g), ok)


def mgda_paths(gram: torch.Tensor) -> torch.Tensor:
    """MGDA: the update is the min-norm point sum_p w_p g_p itself."""
    return mgda_weights(gram)


def cagrad_weights(gram: torch.Tensor, c: float) -> torch.Tensor:
    """argmin over the simplex of LibMTL's CAGrad dual F(w) = g_w.g0 + c|g0||g_w| (g0: the mean).

    With h = G 1/P and kappa = c|g0|, on a support S with G_S regular, F'= mu 1 gives
    w = G_S^-1 (mu 1 - h) / (mu A - B), where A = 1^T G_S^-1 1, B = 1^T G_S^-1 h, C = h^T G_S^-1 h
    and A mu^2 - 2 B mu + C = kappa^2 (the root with mu A - B > 0). A support whose gradients are
    linearly dependent holds no optimum with g_w != 0 in its interior (F is then unbounded or
    least at g_w = 0 on its span), so the candidates are these, the vertices and the min-norm point
    (F = g0.g_w there, 0 when the hull holds 0); the best feasible one is the optimum."""
    u, p, _ = gram.shape
    g = _scale_free(gram)
    s = _supports(p, str(gram.device)).to(gram.dtype)
    h = g.mean(-1)  # (U, P): G b
    kappa = c * torch.sqrt(h.mean(-1).clamp_min(0))  # c |g0|
    rhs = torch.stack([s.expand(u, -1, -1), h[:, None, :] * s], -1)  # (U, n, P, 2)
    sol, info = torch.linalg.solve_ex(_masked(g, s), rhs)
    z1, zh = sol[..., 0] * s, sol[..., 1] * s
    a_, b_ = z1.sum(-1), zh.sum(-1)
    c_ = (h[:, None, :] * zh).sum(-1)
    root = torch.sqrt((b_ * b_ - a_ * (c_ - (kappa * kappa)[:, None])).clamp_min(0))
    mu = safe_div(b_ + root, a_)
    w = safe_div(mu[..., None] * z1 - zh, root[..., None])
    w, ok = _feasible(w, (info == 0) & (a_ > 0) & (root > 0))
    eye = torch.eye(p, dtype=gram.dtype, device=gram.device).expand(u, p, p)
    cand = torch.cat([w, eye, mgda_weights(gram)[:, None, :]], 1)
    ok = torch.cat([ok, torch.ones(u, p + 1, dtype=torch.bool, device=gram.device)], 1)
    f = (cand * h[:, None, :]).sum(-1) + kappa[:, None] * torch.sqrt(_quad(cand, g).clamp_min(0))
    return _best(cand, f, ok)


def cagrad_paths(gram: torch.Tensor, c: float) -> torch.Tensor:
    """CAGrad update (g0 + (c|g0| / |g_w|) g_w) / (1 + c^2), as LibMTL's default rescale 1."""
    p = gram.shape[-1]
    w = cagrad_weights(gram, c)
    gw_sq = torch.einsum("ui,uij,uj->u", w, gram, w).clamp_min(0)
    n0 = torch.sqrt(gram.mean((1, 2)).clamp_min(0))
    lam = safe_div(c * n0, torch.sqrt(gw_sq))
    return (1.0 / p + lam[:, None] * w) / (1 + c * c)
