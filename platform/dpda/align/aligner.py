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

from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal, Mapping

import torch
from pydantic import Field, ValidationInfo, field_serializer, field_validator

from dpda.align import rules
from dpda.align.registry import RULES, NoOptions, Rule, get_rule
from dpda.align.segments import PairDots, Segments, combine_, segment_dots
from dpda.errors import UserError
from dpda.typed import Settings, parse

Granularity = Literal["model", "layer"]
GRANULARITIES: tuple[str, ...] = Granularity.__args__


class AlignerSpec(Settings):
    """What an aligner is: a rule (by registry name), its strength, granularity and options.
    The training config's `align` section extends it, so both validate the same way."""

    rule: str = "pcgrad"
    strength: Annotated[float, Field(ge=0, le=1)] = 1.0
    granularity: Granularity = "model"
    # Where unset options come from: dpda's defaults, or the published code's (`Rule.published`).
    option_defaults: Literal["dpda", "published"] = "dpda"
    # The rule's options model, parsed once here from the YAML mapping; dumps hold the keys given.
    options: Settings = Field(default_factory=dict, validate_default=True)

    @field_validator("rule", mode="before")
    @classmethod
    def _known_rule(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in RULES:
            return value.lower()
        raise ValueError(f"must be one of {', '.join(RULES)}")

    @field_validator("options", mode="before")
    @classmethod
    def _rule_options(cls, raw: Any, info: ValidationInfo) -> Any:
        """The mapping -> the rule's options model (a UserError naming `align.options.KEY`)."""
        if "rule" not in info.data or "option_defaults" not in info.data:
            return NoOptions()  # the rule or option_defaults is wrong: that error is reported
        rule = get_rule(info.data["rule"])
        if isinstance(raw, rule.options):
            return raw
        return rule.parse_options(raw, "align.options", info.data["option_defaults"])

    @field_serializer("options")
    def _given_options(self, options: Settings) -> dict[str, Any]:
        return options.model_dump(exclude_unset=True)


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

    def __init__(self, rule: Rule, strength: float, granularity: str, options: Settings):
        self.rule = rule
        self.name = rule.name
        self.strength = float(strength)
        self.granularity = granularity
        self._options = options
        self.options: dict[str, Any] = options.model_dump()
        self._state: torch.Tensor | None = None  # the rule's state per unit (GradVac's phi_hat)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"Aligner({self.name!r}, strength={self.strength}, granularity={self.granularity!r}{opts})"

    def _coefficients(self, oo: torch.Tensor, aa: torch.Tensor, oa: torch.Tensor,
                      finite: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rule's coefficients per unit; a stateful rule's state is created on first use and
        must keep its shape (one entry per unit) across steps and checkpoints."""
        state = None
        if self.rule.initial_state is not None:
            state = self._state
            if state is None:
                state = self.rule.initial_state(oo)
            elif state.shape != oo.shape:
                raise UserError(
                    f"align: {self.name} state has {state.numel()} targets but this model has "
                    f"{oo.numel()} units (granularity {self.granularity!r}); wrong checkpoint?"
                )
            else:
                state = state.to(oo.device, oo.dtype)
        a, b, state = self.rule.coefficients(oo, aa, oa, self._options, state, finite)
        if self.rule.initial_state is not None:
            self._state = state
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
        a, b = self._coefficients(*unit, finite)
        a, b = rules.blend(a, self.strength, 2), rules.blend(b, self.strength, 2)
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
        if self._state is not None:
            state[self.rule.state_key] = self._state.detach().clone()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("rule") != self.name or state.get("granularity") != self.granularity:
            raise UserError(
                f"align: checkpoint state is for rule {state.get('rule')!r} / granularity "
                f"{state.get('granularity')!r}, not {self.name!r} / {self.granularity!r}"
            )
        saved = state.get(self.rule.state_key)
        self._state = None if saved is None else torch.as_tensor(saved, dtype=torch.float64).clone()


def make_aligner(name: str, strength: float = 1.0, granularity: str = "model", **options: Any) -> Aligner:
    """Build an aligner; unknown rule/option or out-of-range value -> UserError naming it.

    Rules and their options: `dpda.align.registry` (e.g. gradvac: beta=0.01,
    positive_only_update=False; cagrad: c=0.5). To replicate the published DPDA code's GradVac use
    ``make_aligner('gradvac', beta=0.5, positive_only_update=True, granularity='model')``.
    """
    spec = parse(AlignerSpec, {"rule": name, "strength": strength, "granularity": granularity}, "align")
    return aligner_from_spec(spec, options, where="align")


def aligner_from_spec(spec: AlignerSpec, options: Mapping[str, Any] | None = None,
                      where: str = "align.options") -> Aligner:
    """The aligner a validated spec (e.g. the config's `align` section) describes."""
    rule = get_rule(spec.rule)
    if options is None:
        return Aligner(rule, spec.strength, spec.granularity, spec.options)
    return Aligner(rule, spec.strength, spec.granularity, rule.parse_options(options, where, spec.option_defaults))
