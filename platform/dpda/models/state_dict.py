"""Strict state-dict loading with one-line errors: every weight file dpda reads (its own model
files and checkpoints, released published checkpoints) fits the model exactly or is refused
naming the first key that is missing, unexpected or misshaped."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dpda.errors import UserError


def read_weights_only(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU (no pickled code runs), or one UserError:
    a missing file, or the first line of torch's reason (its weights-only errors run to pages)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled objects, or not a torch file at all
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"{path}: not a readable checkpoint with torch.load(weights_only=True) "
                        f"({exc.__class__.__name__}: {first})") from None


def state_mismatch(own: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor],
                   origins: Mapping[str, str] | None = None) -> str | None:
    """None if `weights` has exactly the keys and shapes of `own`, else the counts and the first
    problem (a misshaped key first, then a missing one, then an unexpected one). `origins` maps a
    key of `weights` to the key it was renamed from (a converted checkpoint): the problem names both."""
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    misshaped = [k for k in own if k in weights and tuple(own[k].shape) != tuple(weights[k].shape)]
    if not (missing or unexpected or misshaped):
        return None

    def named(k: str) -> str:
        source = (origins or {}).get(k, k)
        return k if source == k else f"{k} ({source} in the file)"

    if misshaped:
        k = misshaped[0]
        first = f"{named(k)} has shape {tuple(weights[k].shape)}, the model expects {tuple(own[k].shape)}"
    elif missing:
        first = f"missing {missing[0]}" + (" (no key of the file maps to it)" if origins is not None else "")
    else:
        first = f"unexpected {named(unexpected[0])}"
    return f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshaped)} misshaped; first: {first}"


def load_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: str | Path, what: str) -> None:
    """`model.load_state_dict(weights)`, or one UserError naming `source` and the first key that
    is missing, unexpected or misshaped (`what` says which model the file should hold)."""
    problem = state_mismatch(model.state_dict(), weights)
    if problem:
        raise UserError(f"{source}: the weights do not fit {what} ({problem})")
    model.load_state_dict(weights)
