"""The alignment rules, one entry each: the only place a rule is named.

An entry says how the rule turns the three dots of a unit (|g_o|^2, |g_a|^2, g_o.g_a; the whole
model or one parameter tensor) into the update's coefficients, which options it takes (a pydantic
model: defaults and ranges), and whether it keeps state between steps. The aligner, the config
validation, the README's rule table and the search spaces all read this table, so adding a rule
is adding one `register_rule(Rule(...))`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import torch
from pydantic import Field

from dpda.align import path_rules, rules
from dpda.errors import UserError
from dpda.typed import Settings, parse

Tensor = torch.Tensor
# coefficients(oo, aa, oa, options, state, finite) -> (a, b, new state); shapes (U,) per unit.
# `state` is None for a stateless rule; `finite` (bool, shape (1,)) says whether this step counts.
Coefficients = Callable[[Tensor, Tensor, Tensor, Any, "Tensor | None", Tensor], tuple[Tensor, Tensor, "Tensor | None"]]
# paths(gram, options, state, finite, order) -> (c, new state): the rule for P > 2 paths from the
# Gram matrices (U, P, P) to coefficients (U, P) (dpda.align.path_rules); `order()` draws the
# per-task visiting orders (U, P, P) for the rules that need them (dpda.align.multipath).
PathCoefficients = Callable[[Tensor, Any, "Tensor | None", Tensor, Callable[[], Tensor]],
                            tuple[Tensor, "Tensor | None"]]


class NoOptions(Settings):
    """A rule without options."""


@dataclass(frozen=True)
class Rule:
    """One alignment rule. `initial_state(oo)` (None: stateless) gives its state for units shaped
    like `oo`; the state is saved in checkpoints under `state_key`."""

    name: str
    summary: str
    coefficients: Coefficients
    options: type[Settings] = NoOptions
    # The rule for more than two paths (None: two paths only; `dpda.align.multipath.check_paths`).
    # Its state for P > 2 is `initial_state(gram)`, shaped like the Gram matrices (U, P, P).
    paths: PathCoefficients | None = None
    initial_state: Callable[[Tensor], Tensor] | None = None
    state_key: str = "state"
    # The option values of the published DPDA code (github ductuantruong/dpda_ga, grad_align/),
    # where they differ from dpda's defaults; `align.option_defaults: published` starts from them.
    published: Mapping[str, Any] = field(default_factory=dict)

    def parse_options(self, raw: Mapping[str, Any] | None, where: str = "align.options",
                      defaults: str = "dpda") -> Settings:
        """The rule's options, defaults filled in (`defaults`: `dpda`, or `published` to start from
        the published code's values); unknown or out-of-range -> one UserError line. Only the
        keys in `raw` count as set, so a dump (`exclude_unset`) holds what the user wrote, not the
        published values, and stays valid when a search or `--set` changes the rule."""
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            return parse(self.options, raw, where)  # the one line saying it must be a mapping
        start = self.published if defaults == "published" else {}
        checked = parse(self.options, {**start, **raw}, where)
        return self.options.model_construct(_fields_set=set(raw), **dict(checked))


RULES: dict[str, Rule] = {}


def register_rule(rule: Rule) -> Rule:
    """Add a rule (name lower-case, unique); returns it, so it can decorate-style be kept."""
    if rule.name != rule.name.lower() or rule.name in RULES:
        raise ValueError(f"rule {rule.name!r}: names are lower-case and unique")
    RULES[rule.name] = rule
    return rule


def get_rule(name: str) -> Rule:
    key = str(name).lower()
    if key not in RULES:
        raise UserError(f"align.rule: unknown rule {name!r} (known: {', '.join(RULES)})")
    return RULES[key]


def rule_names() -> tuple[str, ...]:
    return tuple(RULES)


# ------------------------------------------------------------------------------------- entries

def _stateless(fn: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]) -> Coefficients:
    return lambda oo, aa, oa, options, state, finite: (*fn(oo, aa, oa), None)


class GradVacOptions(Settings):
    beta: Annotated[float, Field(gt=0, le=1)] = 0.01
    positive_only_update: bool = False


def _gradvac(oo: Tensor, aa: Tensor, oa: Tensor, options: GradVacOptions, phi_hat: Tensor | None,
             finite: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """GradVac toward the EMA target phi_hat, then the EMA update. The target stays for a unit
    whose cosine is undefined (a zero gradient), for a non-finite step, and (published-code
    option) when phi <= 0."""
    assert phi_hat is not None
    a, b = rules.gradvac_coeffs(oo, aa, oa, phi_hat)
    phi = rules.cosine(oo, aa, oa)
    update = (oo > 0) & (aa > 0) & finite
    if options.positive_only_update:
        update = update & (phi > 0)
    beta = options.beta
    return a, b, torch.where(update, (1 - beta) * phi_hat + beta * phi, phi_hat)


def _gradvac_paths(gram: Tensor, options: GradVacOptions, target: Tensor | None, finite: Tensor,
                   order: Callable[[], Tensor]) -> tuple[Tensor, Tensor]:
    assert target is not None
    return path_rules.gradvac_paths(gram, options.beta, options.positive_only_update, target, finite, order())


class CAGradOptions(Settings):
    c: Annotated[float, Field(ge=0)] = 0.5


register_rule(Rule("none", "no alignment: the mean (g_orig + g_aug) / 2", _stateless(rules.mean_coeffs),
                   paths=lambda gram, options, state, finite, order: (path_rules.mean_paths(gram), None)))
register_rule(Rule("pcgrad", "PCGrad (Yu et al., 2020): project each gradient off the other when they conflict",
                   _stateless(rules.pcgrad_coeffs),
                   paths=lambda gram, options, state, finite, order: (path_rules.pcgrad_paths(gram, order()), None)))
register_rule(Rule("gradvac", "GradVac (Wang et al., 2021): steer the cosine toward an EMA target",
                   _gradvac, GradVacOptions, initial_state=torch.zeros_like, state_key="phi_hat",
                   paths=_gradvac_paths,
                   # grad_align/gradvac.py: beta 0.5, its target moves only after a positive cosine
                   published={"beta": 0.5, "positive_only_update": True}))
register_rule(Rule("cagrad", "CAGrad (Liu et al., 2021): the best worst-case update within c |g0| of the mean",
                   lambda oo, aa, oa, options, state, finite: (*rules.cagrad_coeffs(oo, aa, oa, c=options.c), None),
                   CAGradOptions,
                   paths=lambda gram, options, state, finite, order: (path_rules.cagrad_paths(gram, options.c), None)))
register_rule(Rule("mgda", "MGDA (Sener and Koltun, 2018): the two-task min-norm point", _stateless(rules.mgda_coeffs),
                   paths=lambda gram, options, state, finite, order: (path_rules.mgda_paths(gram), None)))
