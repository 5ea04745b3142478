"""Checkpoint files: atomic writes, safe loads (`weights_only=True`), weight averaging."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


def load_checkpoint(path: str | Path, expected_format: str | None = None) -> dict[str, Any]:
    """Load with `weights_only=True` (no pickled code runs) and check the format tag."""
    state = read_weights_only(path)
    if expected_format is not None and (not isinstance(state, dict) or state.get("format") != expected_format):
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise UserError(f"{path}: expected a {expected_format!r} checkpoint, found {found!r}")
    return state


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors (the published n-best averaging); integer buffers
    such as BatchNorm's num_batches_tracked are taken from the first state."""
    if not states:
        raise ValueError("nothing to average")
    keys = states[0].keys()
    for i, s in enumerate(states[1:], 1):
        if s.keys() != keys:
            raise ValueError(f"state {i} has different keys from state 0")
    out = {}
    for k in keys:
        first = states[0][k]
        if first.is_floating_point():
            out[k] = torch.stack([s[k].to(torch.float64) for s in states]).mean(0).to(first.dtype)
        else:
            out[k] = first.clone()
    return out

