"""One alignment step for P >= 2 path gradients: the rule's coefficients from their Gram matrices.

P = 2 dispatches to the registry's two-path rule (the same closed forms the aligner uses, so the
numbers are bit for bit today's); P > 2 to the rule's P-path form (``Rule.paths``, the math in
``dpda.align.path_rules``). Strength is applied by ``rules.blend`` for both. A rule registered
without a P-path form refuses P > 2 in one line (``check_paths``, called when the step is built).
"""

from __future__ import annotations

from typing import Any

import torch

from dpda.align import rules
from dpda.align.registry import RULES, Rule, get_rule
from dpda.errors import UserError


def check_paths(rule: str, n_paths: int) -> None:
    """Refuse (UserError naming `align.rule`) a rule that has no form for ``n_paths`` paths."""
    entry = get_rule(rule)
    if n_paths < 2:
        raise UserError(f"align.rule: {entry.name} aligns at least 2 paths, got {n_paths}")
    if n_paths > 2 and entry.paths is None:
        raise UserError(f"align.rule: {entry.name} has no form for more than 2 paths (got {n_paths}); "
                        f"use one of {', '.join(_multipath_rules())}")


def _multipath_rules() -> list[str]:
    return [name for name, r in RULES.items() if r.paths is not None]


def draw_order(units: int, n_paths: int, generator: torch.Generator | None,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(U, P, P) int64: per unit and task, the order in which it visits the tasks (PCGrad, GradVac).

    A random permutation per row from ``generator`` (which must live on ``device``), as LibMTL's
    ``random.shuffle`` per task; without a generator, index order (deterministic, not random)."""
    if generator is None:
        return torch.arange(n_paths, device=device).expand(units, n_paths, n_paths)
    keys = torch.rand(units, n_paths, n_paths, generator=generator, device=device, dtype=torch.float64)
    return keys.argsort(-1)


def _rule_state(entry: Rule, state: dict, like: torch.Tensor) -> torch.Tensor | None:
    """The rule's state from ``state`` (created on first use); it must keep its shape."""
    if entry.initial_state is None:
        return None
    current = state.get(entry.state_key)
    if current is None:
        return entry.initial_state(like)
    if current.shape != like.shape:
        raise UserError(
            f"align: {entry.name} state has shape {tuple(current.shape)} but these paths and units need "
            f"{tuple(like.shape)}; wrong checkpoint?"
        )
    return current.to(like.device, like.dtype)


def path_coeffs(rule: str, gram: torch.Tensor, *, options: Any, state: dict,
                generator: torch.Generator | None = None, strength: float = 1.0,
                valid: torch.Tensor | None = None, order: torch.Tensor | None = None) -> torch.Tensor:
    """gram: (U, P, P) float64 Gram matrices of the P path gradients, one per unit (U = 1 for the
    whole model, or one per parameter tensor for granularity layer); returns (U, P) float64
    coefficients c so that the update of unit u is sum_p c[u, p] * g_p[u]. `options` is the rule's
    options model (align.options, e.g. GradVac beta, CAGrad c); `strength` is align.strength (the
    blend with the mean, ``rules.blend``); `state` is per-rule mutable state the caller keeps
    across steps, updated in place under ``Rule.state_key`` (GradVac's EMA targets: shape (U,)
    for P = 2, exactly the aligner's; (U, P, P) per ordered pair for P > 2). `valid` (bool, e.g.
    "all losses finite") and the Gram's finiteness decide whether the state moves this step.
    `order` (U or 1, P, P): the tasks' visiting orders, drawn from `generator` when None
    (``draw_order``)."""
    entry = get_rule(rule)
    units, p, _ = gram.shape
    check_paths(entry.name, p)
    finite = torch.isfinite(gram.sum(0)).all().reshape(1)
    if valid is not None:
        finite = finite & valid.to(finite.device).reshape(1)
    if p == 2:
        oo, aa, oa = gram[:, 0, 0], gram[:, 1, 1], gram[:, 0, 1]
        current = _rule_state(entry, state, oo)
        a, b, new = entry.coefficients(oo, aa, oa, options, current, finite)
        coeffs = torch.stack([rules.blend(a, strength, 2), rules.blend(b, strength, 2)], -1)
    else:
        assert entry.paths is not None

        def visiting() -> torch.Tensor:
            if order is not None:
                return order.to(gram.device).expand(units, p, p)
            return draw_order(units, p, generator, gram.device)

        current = _rule_state(entry, state, gram)
        c, new = entry.paths(gram, options, current, finite, visiting)
        coeffs = rules.blend(c, strength, p)
    if entry.initial_state is not None:
        state[entry.state_key] = new
    return coeffs
