"""The alignment rules as closed-form coefficients on dot products.

With two tasks every rule's update is a per-unit linear combination a * g_orig + b * g_aug,
and a and b depend only on the three dots |g_o|^2, |g_a|^2 and g_o.g_a of that unit (the whole
model, or one parameter tensor). So the rules below work on vectors of dots (one entry per unit,
float64) and never touch the parameter-sized buffers; ``segments.combine_`` applies the result.
Everything is tensor code: no host syncs, no SciPy.

Zero-norm convention: cos(u, v) = 0 when either norm is 0, and any ratio whose denominator is 0
is treated as 0, so zero gradients give finite coefficients.
"""

from __future__ import annotations

import torch

_TINY = 1e-300  # guards float64 divisions; any denominator below it counts as zero


def safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, and 0 where den is (numerically) zero."""
    ok = den.abs() > _TINY
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def cosine(oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor) -> torch.Tensor:
    """cos(g_o, g_a) from dots, clamped to [-1, 1]; 0 when either norm is 0."""
    return safe_div(oa, torch.sqrt(oo.clamp_min(0) * aa.clamp_min(0))).clamp(-1.0, 1.0)


def blend(coeffs: torch.Tensor, strength: float, n_paths: int) -> torch.Tensor:
    """A rule's coefficients at ``strength`` s: (1 - s) * mean + s * rule (s = 1: unchanged).

    The one place strength is applied, for two paths (the aligner) and for P (``multipath``)."""
    if strength == 1.0:
        return coeffs
    return (1 - strength) / n_paths + strength * coeffs


def mean_coeffs(oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """No alignment: (g_o + g_a) / 2, the gradient of the mean loss over the concatenated batch."""
    half = torch.full_like(oo, 0.5)
    return half, half.clone()


def pcgrad_task_coeffs(
    oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCGrad per task: g_o' = m00 g_o + m01 g_a, g_a' = m10 g_o + m11 g_a.

    Each task is projected against the ORIGINAL other gradient, only when they conflict (dot < 0).
    """
    conflict = oa < 0
    zero = torch.zeros_like(oa)
    m01 = torch.where(conflict, -safe_div(oa, aa), zero)  # g_o - (oa/|g_a|^2) g_a
    m10 = torch.where(conflict, -safe_div(oa, oo), zero)  # g_a - (oa/|g_o|^2) g_o
    one = torch.ones_like(oa)
    return one, m01, m10, one.clone()


def pcgrad_coeffs(oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PCGrad update = mean of the two projected gradients."""
    m00, m01, m10, m11 = pcgrad_task_coeffs(oo, aa, oa)
    return (m00 + m10) / 2, (m01 + m11) / 2


def gradvac_task_coeffs(
    oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor, phi_hat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """GradVac per task against the target similarity ``phi_hat`` (same shape as the dots).

    If phi = cos(g_i, g_j) < phi_hat: g_i += g_j |g_i| (phi_hat sqrt(1-phi^2) - phi sqrt(1-phi_hat^2))
    / (|g_j| sqrt(1-phi_hat^2)), which sets cos(g_i', g_j) to exactly phi_hat. Both tasks use the
    same (pre-update) phi_hat and the original other gradient. sqrt(1-phi_hat^2) is floored at 1e-12
    so phi_hat = +-1 gives a large but finite correction.
    """
    phi = cosine(oo, aa, oa)
    no, na = torch.sqrt(oo.clamp_min(0)), torch.sqrt(aa.clamp_min(0))
    s_phi = torch.sqrt((1 - phi * phi).clamp_min(0))
    s_hat = torch.sqrt((1 - phi_hat * phi_hat).clamp_min(0)).clamp_min(1e-12)
    k = (phi_hat * s_phi - phi * s_hat) / s_hat
    active = phi < phi_hat
    zero = torch.zeros_like(oa)
    m01 = torch.where(active, safe_div(no * k, na), zero)  # added multiple of g_a to g_o
    m10 = torch.where(active, safe_div(na * k, no), zero)  # added multiple of g_o to g_a
    one = torch.ones_like(oa)
    return one, m01, m10, one.clone()


def gradvac_coeffs(
    oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor, phi_hat: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """GradVac update = mean of the two adjusted gradients."""
    m00, m01, m10, m11 = gradvac_task_coeffs(oo, aa, oa, phi_hat)
    return (m00 + m10) / 2, (m01 + m11) / 2


def cagrad_weight(oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor, c: float) -> torch.Tensor:
    """argmin over w in [0, 1] of F(w) = g_w.g0 + c |g0| |g_w|, g_w = w g_o + (1-w) g_a.

    With d = g_o - g_a: g_w = g_a + w d, so F(w) = const + q w + c|g0| sqrt(dd w^2 + 2 r w + aa)
    (q = g0.d, r = g_a.d, dd = |d|^2), a convex function. Writing u = w + r/dd and
    m = aa - r^2/dd >= 0, F'(w) = 0 gives u = t sqrt(m / (dd (dd - t^2))) with t = -q / (c|g0|)
    when t^2 < dd; otherwise F is monotone and the minimum is at the end sign(t) points to.
    Clipping the stationary point to [0, 1] gives the constrained minimum (F is convex).
    Degenerate units (g_o = g_a, where F does not depend on w) get w = 0.5.
    """
    dd = (oo - 2 * oa + aa).clamp_min(0)
    r = oa - aa
    q = (oo - aa) / 2
    n0 = torch.sqrt(((oo + 2 * oa + aa) / 4).clamp_min(0))
    cn0 = c * n0
    scale = (oo + aa).clamp_min(_TINY)
    degenerate = dd <= 1e-12 * scale
    dd_s = torch.where(degenerate, torch.ones_like(dd), dd)
    # c|g0| = 0 makes F linear in w: t = -inf * sign(q) sends w to the right end (any w if q = 0).
    flat = cn0 <= 1e-150
    t_lin = torch.where(q == 0, torch.zeros_like(q), -torch.sign(q) * torch.inf)
    t = torch.where(flat, t_lin, -q / torch.where(flat, torch.ones_like(cn0), cn0))
    t2 = t * t
    m = (aa - r * r / dd_s).clamp_min(0)
    inside = t2 < dd_s
    gap = torch.where(inside, dd_s - t2, torch.ones_like(dd_s)).clamp_min(_TINY)
    u = torch.where(inside, t * torch.sqrt(m / (dd_s * gap)), torch.sign(t) * torch.inf)
    w = (u - r / dd_s).clamp(0.0, 1.0)
    return torch.where(degenerate, torch.full_like(w, 0.5), w)


def cagrad_coeffs(
    oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor, c: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """CAGrad update (g0 + (c|g0| / |g_w|) g_w) / (1 + c^2), g0 = mean gradient."""
    w = cagrad_weight(oo, aa, oa, c)
    gw_sq = (w * w * oo + 2 * w * (1 - w) * oa + (1 - w) * (1 - w) * aa).clamp_min(0)
    n0 = torch.sqrt(((oo + 2 * oa + aa) / 4).clamp_min(0))
    lam = safe_div(c * n0, torch.sqrt(gw_sq))
    denom = 1 + c * c
    return (0.5 + lam * w) / denom, (0.5 + lam * (1 - w)) / denom


def mgda_weight(oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor) -> torch.Tensor:
    """Two-task min-norm weight alpha = clip(((g_a - g_o).g_a) / |g_o - g_a|^2, 0, 1); 0.5 if g_o = g_a."""
    dd = (oo - 2 * oa + aa).clamp_min(0)
    degenerate = dd <= 1e-12 * (oo + aa).clamp_min(_TINY)
    alpha = ((aa - oa) / torch.where(degenerate, torch.ones_like(dd), dd)).clamp(0.0, 1.0)
    return torch.where(degenerate, torch.full_like(alpha, 0.5), alpha)


def mgda_coeffs(oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MGDA update d = alpha g_o + (1 - alpha) g_a (the min-norm point of the segment)."""
    alpha = mgda_weight(oo, aa, oa)
    return alpha, 1 - alpha
