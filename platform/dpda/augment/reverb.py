"""The `reverb` transform: convolution with a room impulse response drawn from a bank
(RIRS_NOISES layout or a CSV), direct-path aligned (`dpda.augment.mixing.reverberate`).

Per utterance one RIR, uniformly among the files of `categories` (RIRS_NOISES: `smallroom`,
`mediumroom`, `largeroom`, `real`; default the simulated small and medium rooms, as Kaldi's
voxceleb recipe weights them). The draw is one uniform per utterance (bank-independent); `apply`
reads the chosen RIRs (first channel, cut to `max_seconds`) on the host and convolves batched on
x's device by FFT.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from dpda import SAMPLE_RATE
from dpda.augment import bank_source
from dpda.augment.mixing import reverberate
from dpda.augment.ranges import TransformParams


class ReverbParams(TransformParams):
    """`bank`: `rirs:PATH` or `csv:FILE`; `categories` drawn from (`*` = any file);
    `max_seconds`: RIRs cut to this length; `normalize`: keep each utterance's energy."""

    bank: str
    categories: Annotated[list[str], Field(min_length=1)] = ["smallroom", "mediumroom"]
    max_seconds: Annotated[float, Field(gt=0, le=10)] = 2.0
    normalize: bool = False

    @field_validator("bank")
    @classmethod
    def _a_bank(cls, spec: str) -> str:
        return bank_source.check_spec(spec, ("rirs", "csv"))


def prepare_reverb(p: ReverbParams, where: str, policy: str) -> dict[str, Any]:
    bank, verdict = bank_source.open_bank(p.bank, policy, f"{where}.bank")
    bank_source.require_categories(bank, p.categories, p.bank, f"{where}.categories")
    return {verdict["fingerprint"]: verdict}


def draw_reverb(p: ReverbParams, batch: int, time: int, gen: torch.Generator | None, device: torch.device,
                workspace: object = None) -> dict[str, Tensor]:
    where = gen.device if gen is not None else device
    return {"file": torch.rand((batch,), generator=gen, device=where, dtype=torch.float64).to(device)}


def rirs_for(p: ReverbParams, drawn: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """((rows, longest) float32 RIRs zero-padded, (rows,) int64 lengths) on the host."""
    bank = bank_source.sampler(p.bank)
    pool = np.concatenate([bank_source.rows_of(bank, c) for c in dict.fromkeys(p.categories)])
    chosen = [pool[min(int(u * len(pool)), len(pool) - 1)] for u in drawn["file"].tolist()]
    limit = int(round(p.max_seconds * SAMPLE_RATE))
    lengths = np.minimum(bank.frames[chosen], limit).astype(np.int64)
    out = np.zeros((len(chosen), int(lengths.max(initial=1))), np.float32)
    for b, (row, n) in enumerate(zip(chosen, lengths)):
        out[b, :n] = bank.span(int(row), 0.0, int(n), first_channel=True)
    return torch.from_numpy(out), torch.from_numpy(lengths)


def apply_reverb(p: ReverbParams, x: Tensor, drawn: dict[str, Tensor]) -> Tensor:
    rir, lengths = rirs_for(p, drawn)
    return reverberate(x, rir.to(x.device), lengths.to(x.device), normalize=p.normalize)
