"""Level transforms on `(batch, time)` waveforms, batched on the input's device: `gain` and `clip`.

Draws are signal-independent (a gain in dB, a fraction of the peak); `apply` is deterministic.
"""

from __future__ import annotations

import torch
from pydantic import model_validator
from torch import Tensor

from dpda.augment.ranges import Range, TransformParams, uniform
from dpda.typed import relation_error


class GainParams(TransformParams):
    """Gain drawn uniformly in dB per utterance."""

    db: Range = [-6.0, 6.0]


class ClipParams(TransformParams):
    """Hard clipping at `fraction` of each utterance's peak, the fraction drawn per utterance."""

    fraction: Range = [0.3, 0.9]

    @model_validator(mode="after")
    def _a_fraction(self) -> ClipParams:
        if not (0 < self.fraction[0] and self.fraction[1] <= 1):
            raise relation_error("fraction", f"must lie in (0, 1], got {self.fraction}")
        return self


def draw_gain(p: GainParams, batch: int, time: int, gen: torch.Generator | None, device: torch.device,
              workspace: object = None) -> dict[str, Tensor]:
    return {"db": uniform(p.db, batch, gen, device)}


def gain(x: Tensor, db: Tensor) -> Tensor:
    """x * 10^(db / 20) per row."""
    return x * torch.pow(10.0, db.to(x.dtype) / 20).unsqueeze(-1)


def apply_gain(p: GainParams, x: Tensor, drawn: dict[str, Tensor]) -> Tensor:
    return gain(x, drawn["db"])


def draw_clip(p: ClipParams, batch: int, time: int, gen: torch.Generator | None, device: torch.device,
              workspace: object = None) -> dict[str, Tensor]:
    return {"fraction": uniform(p.fraction, batch, gen, device)}


def clip(x: Tensor, fraction: Tensor) -> Tensor:
    """Clamp each row to +-fraction * its peak magnitude (a silent row stays silent)."""
    limit = x.abs().amax(dim=-1, keepdim=True) * fraction.to(x.dtype).unsqueeze(-1)
    return torch.minimum(torch.maximum(x, -limit), limit)


def apply_clip(p: ClipParams, x: Tensor, drawn: dict[str, Tensor]) -> Tensor:
    return clip(x, drawn["fraction"])
