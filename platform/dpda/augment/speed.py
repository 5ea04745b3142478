"""Speed perturbation (`speed`): resample by a drawn factor, then crop or zero-pad back to the
input length, batched on the input's device.

A factor f plays the utterance f times faster (pitch and tempo both change, as Kaldi's and
SpeechBrain's speed perturbation do): `torchaudio.functional.resample` from f*100 to 100 (reduced
by their gcd), giving round(T / f) samples, then the first T samples are kept or zeros appended
so the batch keeps its shape (the dual path needs both paths the same length). Factors are taken
to 0.01; the batch is resampled once per distinct factor drawn (rows grouped, no per-sample loop).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Annotated

import torch
from pydantic import Field, model_validator
from torch import Tensor

from dpda.augment.ranges import Range, TransformParams, uniform
from dpda.typed import relation_error

STEP = 100  # factors are resolved to 1/STEP


class SpeedParams(TransformParams):
    """`factors`: a set drawn from uniformly (default Kaldi's 0.9, 1.0, 1.1); or `range`: a factor
    drawn from U(low, high), rounded to 0.01. Not both."""

    factors: Annotated[list[Annotated[float, Field(ge=0.5, le=2.0)]], Field(min_length=1)] | None = None
    range: Range | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SpeedParams:
        if self.factors is not None and self.range is not None:
            raise relation_error("range", "give factors or range, not both")
        if self.range is not None and not (0.5 <= self.range[0] and self.range[1] <= 2.0):
            raise relation_error("range", f"must lie in [0.5, 2], got {self.range}")
        return self

    @property
    def table(self) -> list[int]:
        """Every factor this transform can draw, in 1/STEP units."""
        if self.range is not None:
            return list(range(round(self.range[0] * STEP), round(self.range[1] * STEP) + 1))
        return [round(f * STEP) for f in (self.factors or [0.9, 1.0, 1.1])]


def draw_speed(p: SpeedParams, batch: int, time: int, gen: torch.Generator | None, device: torch.device,
               workspace: object = None) -> dict[str, Tensor]:
    """The factor per utterance, in 1/STEP units (int64)."""
    if p.range is not None:
        return {"factor": torch.round(uniform(p.range, batch, gen, device) * STEP).long()}
    table = torch.tensor(p.table, dtype=torch.long)
    where = gen.device if gen is not None else device
    pick = torch.randint(0, len(table), (batch,), generator=gen, device=where)
    return {"factor": table.to(where)[pick].to(device)}


def resample_by(x: Tensor, factor: Fraction) -> Tensor:
    """x (…, T) played `factor` times faster: round(T / factor) samples (torchaudio's sinc
    resampler, trimmed from its ceil(T / factor))."""
    from dpda._torchaudio import torchaudio

    time = x.shape[-1]
    if factor == 1:
        return x
    y = torchaudio.functional.resample(x, factor.numerator, factor.denominator)
    return y[..., : round(time / factor)]


def fit_length(y: Tensor, time: int) -> Tensor:
    """The first `time` samples of y, zero-padded at the end if shorter."""
    if y.shape[-1] >= time:
        return y[..., :time]
    return torch.nn.functional.pad(y, (0, time - y.shape[-1]))


def speed(x: Tensor, factor: Tensor) -> Tensor:
    """Each row resampled by its factor (1/STEP units), back at the input length."""
    out = x.clone()
    for value in torch.unique(factor).tolist():  # one host sync; one pass per distinct factor
        if value == STEP:
            continue
        rows = (factor == value).nonzero().squeeze(1)
        moved = resample_by(x.index_select(0, rows), Fraction(value, STEP))
        out.index_copy_(0, rows, fit_length(moved, x.shape[-1]).to(x.dtype))
    return out


def apply_speed(p: SpeedParams, x: Tensor, drawn: dict[str, Tensor]) -> Tensor:
    return speed(x, drawn["factor"])
