"""Alignment rules over P path gradients, from their Gram matrices (placeholder: P = 2 as the
aligner computes it; P > 2 only the mean, rule `none`). Replaced by the full K-path rules."""

from __future__ import annotations

from typing import Any

import torch

from dpda.align.registry import get_rule
from dpda.errors import UserError


def path_coeffs(rule: str, gram: torch.Tensor, *, options: Any, state: dict,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(U, P, P) float64 Gram matrices -> (U, P) float64 coefficients (update of unit u =
    sum_p c[u, p] g_p[u]); `state` is the rule's mutable per-rule dict, kept by the caller."""
    p = gram.shape[-1]
    if p == 2:
        entry = get_rule(rule)
        oo, aa, oa = gram[:, 0, 0], gram[:, 1, 1], gram[:, 0, 1]
        finite = (torch.isfinite(oo) & torch.isfinite(aa) & torch.isfinite(oa)).all().reshape(1)
        prev = None
        if entry.initial_state is not None:
            prev = state.get(entry.state_key)
            prev = entry.initial_state(oo) if prev is None else prev.to(oo.device, oo.dtype)
        a, b, new = entry.coefficients(oo, aa, oa, options, prev, finite)
        if entry.initial_state is not None:
            state[entry.state_key] = new
        return torch.stack([a, b], 1)
    if rule != "none":
        raise NotImplementedError(f"rule {rule!r} for {p} paths")
    return torch.full(gram.shape[:2], 1.0 / p, dtype=torch.float64, device=gram.device)


def check_paths(rule: str, n_paths: int) -> None:
    """UserError naming align.rule if `rule` has no form for `n_paths` paths."""
    if n_paths > 2 and rule != "none":
        raise UserError(f"align.rule: {rule} has no {n_paths}-path form yet (augment.paths gives "
                        f"{n_paths - 1} augmented paths); use rule none or one augmented path")
