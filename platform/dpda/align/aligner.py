"""Aligner objects: a rule + strength + granularity, with state (GradVac) and gradient statistics.

Use ``make_aligner(name, strength=1.0, granularity='model'|'layer', **options)``. An aligner works
in two phases so a training step can fold clipping and the non-finite guard into the
coefficients without another pass over the parameters:

    dots = segment_dots(g_orig, g_aug, segments)          # one pass, batched per segment
    coeffs, stats = aligner.solve(dots, valid=...)        # tiny tensors, no host sync
    combine_(g_orig, g_aug, coeffs.a, coeffs.b, segments, out=...)  # one pass

or call ``aligner(g_orig, g_aug, segments)`` to do all three.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

import torch

from dpda.align import rules
from dpda.align.segments import PairDots, Segments, combine_, segment_dots
from dpda.errors import UserError

RULES = ("none", "pcgrad", "gradvac", "cagrad", "mgda")
GRANULARITIES = ("model", "layer")
# Accepted options per rule, with defaults.
OPTIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "pcgrad": {},
    "gradvac": {"beta": 0.01, "positive_only_update": False},
    "cagrad": {"c": 0.5},
    "mgda": {},
}


@dataclass
class Coefficients:
    """Update = a * g_orig + b * g_aug per unit; shape (1,) (whole model) or (S,) (per segment)."""

    a: torch.Tensor
    b: torch.Tensor

    def scaled(self, factor: torch.Tensor) -> "Coefficients":
        return Coefficients(self.a * factor, self.b * factor)


@dataclass
class AlignStats:
    """Gradient statistics of one alignment, all tensors on the gradients' device (float64).

    Whole model: cos (g_orig vs g_aug), norm_orig, norm_aug, conflict (cos < 0, bool),
    cos_update_orig / cos_update_aug (final update vs each path's gradient), update_norm, finite
    (bool: both gradients finite and ``valid``). Per segment (shape (S,)): layer_cos,
    layer_norm_orig, layer_norm_aug. Cosines are 0 when a norm is 0.
    """

    cos: torch.Tensor
    norm_orig: torch.Tensor
    norm_aug: torch.Tensor
    conflict: torch.Tensor
    cos_update_orig: torch.Tensor
    cos_update_aug: torch.Tensor
    update_norm: torch.Tensor
    finite: torch.Tensor
    layer_cos: torch.Tensor
    layer_norm_orig: torch.Tensor
    layer_norm_aug: torch.Tensor

    def scale_norms(self, factor: torch.Tensor) -> "AlignStats":
        """Norms times ``factor`` (e.g. 1/loss scale); cosines are scale-free and stay."""
        out = AlignStats(**{f.name: getattr(self, f.name) for f in fields(self)})
        for name in ("norm_orig", "norm_aug", "update_norm", "layer_norm_orig", "layer_norm_aug"):
            setattr(out, name, getattr(self, name) * factor)
        return out


@dataclass
class Alignment:
    update: torch.Tensor
    stats: AlignStats


class Aligner:
    """One gradient-alignment rule (see ``dpda.align.rules``) with strength and granularity.

    ``strength`` s in [0, 1] blends: update = (1 - s) * mean + s * rule_update, so s = 0 is the
    plain mean. GradVac keeps its EMA target phi_hat per unit (one scalar for granularity
    'model', one per parameter tensor for 'layer'); it is created on the first call and saved
    with ``state_dict()``.
    """

    def __init__(self, name: str, strength: float = 1.0, granularity: str = "model", **options: Any):
        self.name = name
        self.strength = float(strength)
        self.granularity = granularity
        self.options = options
        self._phi_hat: torch.Tensor | None = None
        # Stateless rules map dots to coefficients; GradVac (None here) is stateful, see _gradvac.
        self._rule: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = {
            "none": rules.mean_coeffs,
            "pcgrad": rules.pcgrad_coeffs,
            "mgda": rules.mgda_coeffs,
            "cagrad": functools.partial(rules.cagrad_coeffs, c=float(options.get("c", 0.5))),
        }.get(name)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"Aligner({self.name!r}, strength={self.strength}, granularity={self.granularity!r}{opts})"

    # ------------------------------------------------------------------ rules
    def _gradvac(
        self, oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor, finite: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        phi_hat = self._phi_hat
        if phi_hat is None:
            phi_hat = torch.zeros_like(oo)
        elif phi_hat.shape != oo.shape:
            raise UserError(
                f"align: gradvac state has {phi_hat.numel()} targets but this model has "
                f"{oo.numel()} units (granularity {self.granularity!r}); wrong checkpoint?"
            )
        else:
            phi_hat = phi_hat.to(oo.device, oo.dtype)
        a, b = rules.gradvac_coeffs(oo, aa, oa, phi_hat)
        # EMA of the observed cosine; skipped for a unit whose cosine is undefined (a zero
        # gradient), for a non-finite step, and (DPDA-code option) when phi <= 0.
        phi = rules.cosine(oo, aa, oa)
        beta = float(self.options["beta"])
        upd = (oo > 0) & (aa > 0) & finite
        if self.options["positive_only_update"]:
            upd = upd & (phi > 0)
        self._phi_hat = torch.where(upd, (1 - beta) * phi_hat + beta * phi, phi_hat)
        return a, b

    # ------------------------------------------------------------------ API
    def solve(self, dots: PairDots, valid: torch.Tensor | None = None) -> tuple[Coefficients, AlignStats]:
        """Coefficients of the update and the statistics, from per-segment dots (shape (S,)).

        ``valid`` (0-dim bool tensor, e.g. "both losses finite") is and-ed into ``stats.finite``;
        when the step is not finite the coefficients are still returned (the caller decides how to
        neutralise them) but GradVac's state is left unchanged.
        """
        oo_s, aa_s, oa_s = dots
        tot = dots.total()
        finite = torch.isfinite(tot.oo) & torch.isfinite(tot.aa) & torch.isfinite(tot.oa)
        if valid is not None:
            finite = finite & valid.to(finite.device).reshape(1)
        unit = tot if self.granularity == "model" else dots
        a, b = self._gradvac(*unit, finite) if self._rule is None else self._rule(*unit)
        s = self.strength
        if s != 1.0:
            a = (1 - s) * 0.5 + s * a
            b = (1 - s) * 0.5 + s * b
        coeffs = Coefficients(a, b)
        # Statistics from the dots alone: update = a g_o + b g_a per segment.
        ea, eb = (a, b) if a.numel() == oo_s.numel() else (a.expand_as(oo_s), b.expand_as(oo_s))
        u_o = (ea * oo_s + eb * oa_s).sum()
        u_a = (ea * oa_s + eb * aa_s).sum()
        u_sq = (ea * ea * oo_s + 2 * ea * eb * oa_s + eb * eb * aa_s).sum().clamp_min(0)
        oo, aa, oa = (t.reshape(()) for t in tot)
        cos = rules.cosine(oo, aa, oa)
        stats = AlignStats(
            cos=cos,
            norm_orig=oo.clamp_min(0).sqrt(),
            norm_aug=aa.clamp_min(0).sqrt(),
            conflict=cos < 0,
            cos_update_orig=rules.cosine(u_sq, oo, u_o),
            cos_update_aug=rules.cosine(u_sq, aa, u_a),
            update_norm=u_sq.sqrt(),
            finite=finite.reshape(()),
            layer_cos=rules.cosine(oo_s, aa_s, oa_s),
            layer_norm_orig=oo_s.clamp_min(0).sqrt(),
            layer_norm_aug=aa_s.clamp_min(0).sqrt(),
        )
        return coeffs, stats

    def __call__(
        self,
        g_orig: torch.Tensor,
        g_aug: torch.Tensor,
        segments: Segments | None = None,
        out: torch.Tensor | None = None,
    ) -> Alignment:
        """Align two flat gradients (shape (P,)); ``out`` may alias either input (in place)."""
        segments = segments or Segments.single(g_orig.numel())
        coeffs, stats = self.solve(segment_dots(g_orig, g_aug, segments))
        update = combine_(g_orig, g_aug, coeffs.a, coeffs.b, segments, out=out)
        return Alignment(update, stats)

    def state_dict(self) -> dict[str, Any]:
        """Rule state for checkpoints (plain dict of tensors/str, loadable with weights_only)."""
        state: dict[str, Any] = {"rule": self.name, "granularity": self.granularity}
        if self._phi_hat is not None:
            state["phi_hat"] = self._phi_hat.detach().clone()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("rule") != self.name or state.get("granularity") != self.granularity:
            raise UserError(
                f"align: checkpoint state is for rule {state.get('rule')!r} / granularity "
                f"{state.get('granularity')!r}, not {self.name!r} / {self.granularity!r}"
            )
        phi = state.get("phi_hat")
        self._phi_hat = None if phi is None else torch.as_tensor(phi, dtype=torch.float64).clone()


def make_aligner(name: str, strength: float = 1.0, granularity: str = "model", **options: Any) -> Aligner:
    """Build an aligner; unknown rule/option or out-of-range value -> UserError naming it.

    Rules: none, pcgrad, gradvac (beta=0.01, positive_only_update=False), cagrad (c=0.5), mgda.
    To replicate the published DPDA code's GradVac use
    ``make_aligner('gradvac', beta=0.5, positive_only_update=True, granularity='model')``.
    """
    key = str(name).lower()
    if key not in RULES:
        raise UserError(f"align.rule: unknown rule {name!r} (known: {', '.join(RULES)})")
    if granularity not in GRANULARITIES:
        raise UserError(f"align.granularity: {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise UserError(f"align.strength: {strength!r} is not a number") from None
    if not 0.0 <= s <= 1.0:
        raise UserError(f"align.strength: {strength!r} must be in [0, 1]")
    accepted = OPTIONS[key]
    for opt in options:
        if opt not in accepted:
            known = ", ".join(accepted) or "none"
            raise UserError(f"align.{opt}: unknown option for rule {key!r} (accepted: {known})")
    opts = {**accepted, **options}
    if key == "gradvac":
        beta = opts["beta"]
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 < float(beta) <= 1.0:
            raise UserError(f"align.beta: {beta!r} must be a number in (0, 1]")
        if not isinstance(opts["positive_only_update"], bool):
            raise UserError(f"align.positive_only_update: {opts['positive_only_update']!r} must be true or false")
        opts["beta"] = float(beta)
    if key == "cagrad":
        c = opts["c"]
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= float(c) < float("inf"):
            raise UserError(f"align.c: {c!r} must be a finite number >= 0")
        opts["c"] = float(c)
    return Aligner(key, s, granularity, **opts)
