"""Checkpoint files: atomic writes, safe loads (`weights_only=True`), weight averaging."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from dpda.errors import UserError
from dpda.models.state_dict import read_weights_only


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary name and rename, so a kill mid-write never leaves a broken file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a full disk surfaces as either, from torch's writer
        tmp.unlink(missing_ok=True)
        kept = " (the previous one is kept)" if path.exists() else ""
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: could not write the checkpoint{kept}: {reason}") from None


TRAIN_STATE_FORMAT = "dpda-train-state"  # last.pt: weights, optimizer, aligner, loop state (resume)


def load_checkpoint(path: str | Path, expected_format: str | None = None) -> dict[str, Any]:
    """Load with `weights_only=True` (no pickled code runs) and check the format tag."""
    state = read_weights_only(path)
    if expected_format is not None and (not isinstance(state, dict) or state.get("format") != expected_format):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise UserError(f"{path}: expected a {expected_format!r} checkpoint, found {found!r}")
    return state


AverageFormula = Literal["mean", "published"]
AVERAGE_FORMULAS: tuple[str, ...] = get_args(AverageFormula)


def average_counts(n: int, formula: str = "mean") -> list[int]:
    """How many times each of `n` ranked states (best first) enters the sum that is divided by n.

    `mean`: once each. `published`: what the published main.py computes. Its `sd =
    model.state_dict()` holds references to the model's tensors, so loading the second-best
    weights overwrites the best ones inside `sd` before the first addition: the sum is
    2 w1 + w2 + ... + w_{n-1} (0-based ranks; the best epoch w0 is lost), still divided by n.
    """
    if formula not in AVERAGE_FORMULAS:
        raise ValueError(f"unknown averaging formula {formula!r} (known: {', '.join(AVERAGE_FORMULAS)})")
    if formula == "mean" or n == 1:
        return [1] * n
    return [0, 2, *([1] * (n - 2))]


def average_state_dicts(states: list[dict[str, torch.Tensor]], formula: str = "mean") -> dict[str, torch.Tensor]:
    """Average of ranked states (best first), see `average_counts`. Floating tensors are summed in
    float64. Integer buffers (BatchNorm's num_batches_tracked): `mean` takes the first state's;
    `published` divides their sum with truncation, as the published load_state_dict copy does."""
    if not states:
        raise ValueError("nothing to average")
    keys = states[0].keys()
    for i, s in enumerate(states[1:], 1):
        if s.keys() != keys:
            raise ValueError(f"state {i} has different keys from state 0")
    counts, n = average_counts(len(states), formula), len(states)
    used = [(c, s) for c, s in zip(counts, states) if c]
    out = {}
    for k in keys:
        first = states[0][k]
        if first.is_floating_point():
            out[k] = (sum(c * s[k].to(torch.float64) for c, s in used) / n).to(first.dtype)
        elif formula == "published":
            out[k] = torch.div(sum(c * s[k] for c, s in used), n, rounding_mode="trunc").to(first.dtype)
        else:
            out[k] = first.clone()
    return out

