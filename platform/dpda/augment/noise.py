"""The `noise` transform: additive noise from a bank at a drawn SNR, per category (MUSAN's
`noise/`, `music/`, `speech/` as Kaldi's and SpeechBrain's recipes use them), babble included.

Per utterance: one category (by `weight`), then that category's SNR in dB from `snr` and its file
count from `count` (babble: several speech files summed, Kaldi's 3-7), each file from a uniform
offset. Defaults are Kaldi's MUSAN recipe (egs/voxceleb/v2/run.sh): noise 0-15 dB one file,
music 5-15 dB one file, babble 13-20 dB of 3-7 speakers, categories equally likely.

Draws are only numbers (category, SNR, count, a uniform per file slot for the file and one for
its offset), all made for every category and every utterance, so the random stream does not
depend on the bank or on which category an utterance gets. `apply` reads the chosen files (only
those: `dpda.data.bank_sampler`, seeks, bounded by rows x time) on the host, in the process that
runs the pipeline (the trainer, or the DataLoader workers with `data.augment_before_crop`), then
mixes batched on x's device (`dpda.augment.mixing.mix_at_snr`).
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from dpda.augment import bank_source
from dpda.augment.mixing import mix_at_snr
from dpda.augment.ranges import RANGE, Range, TransformParams, uniform

MAX_COUNT = 32
CountRange = Annotated[list[Annotated[int, Field(ge=1, le=MAX_COUNT)]], Field(min_length=2, max_length=2), RANGE]


class NoiseCategory(TransformParams):
    """One category's settings: SNR range (dB), files summed (`[low, high]`), relative weight."""

    snr: Range = [0.0, 15.0]
    count: CountRange = [1, 1]
    weight: Annotated[float, Field(gt=0)] = 1.0


KALDI_CATEGORIES: dict[str, dict[str, Any]] = {
    "noise": {"snr": [0.0, 15.0]},
    "music": {"snr": [5.0, 15.0]},
    "speech": {"snr": [13.0, 20.0], "count": [3, 7]},
}


class NoiseParams(TransformParams):
    """`bank`: `musan:PATH` or `csv:FILE`; `categories`: name -> settings (`*` = any file)."""

    bank: str
    categories: Annotated[dict[str, NoiseCategory], Field(min_length=1)] = Field(
        default_factory=lambda: {k: NoiseCategory(**v) for k, v in KALDI_CATEGORIES.items()})

    @field_validator("bank")
    @classmethod
    def _a_bank(cls, spec: str) -> str:
        return bank_source.check_spec(spec, ("musan", "csv"))

    @property
    def slots(self) -> int:
        """Files drawn per utterance: the largest count any category can take."""
        return max(c.count[1] for c in self.categories.values())


def prepare_noise(p: NoiseParams, where: str, policy: str) -> dict[str, Any]:
    """Open and check the bank and its categories before training; its verdict for the trials."""
    bank, verdict = bank_source.open_bank(p.bank, policy, f"{where}.bank")
    bank_source.require_categories(bank, list(p.categories), p.bank, f"{where}.categories")
    return {verdict["fingerprint"]: verdict}


def _rand(shape: tuple[int, ...], gen: torch.Generator | None, device: torch.device) -> Tensor:
    where = gen.device if gen is not None else device
    return torch.rand(shape, generator=gen, device=where, dtype=torch.float64).to(device)


def draw_noise(p: NoiseParams, batch: int, time: int, gen: torch.Generator | None, device: torch.device,
               workspace: object = None) -> dict[str, Tensor]:
    """category (index into `categories`), snr (dB), count, and per file slot a uniform for the
    file (`file`) and its offset (`offset`); order: choice, then per category snr and count, then
    the slots."""
    cats = list(p.categories.values())
    weights = torch.tensor([c.weight for c in cats], dtype=torch.float64, device=device)
    edges = torch.cumsum(weights, 0) / weights.sum()
    category = torch.searchsorted(edges, _rand((batch,), gen, device), right=True).clamp_max(len(cats) - 1)
    snr = torch.zeros(batch, dtype=torch.float64, device=device)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    for k, c in enumerate(cats):
        here = category == k
        snr = torch.where(here, uniform(c.snr, batch, gen, device), snr)
        n = c.count[0] + (_rand((batch,), gen, device) * (c.count[1] - c.count[0] + 1)).long().clamp_max(c.count[1] - c.count[0])
        count = torch.where(here, n, count)
    slots = p.slots
    return {"category": category, "snr": snr, "count": count,
            "file": _rand((batch, slots), gen, device), "offset": _rand((batch, slots), gen, device)}


def noise_for(p: NoiseParams, drawn: dict[str, Tensor], time: int) -> Tensor:
    """(rows, time) float32 on the host: each row's drawn files of its category, summed."""
    bank = bank_source.sampler(p.bank)
    names = list(p.categories)
    rows = [bank_source.rows_of(bank, name) for name in names]
    category, count = drawn["category"].tolist(), drawn["count"].tolist()
    files, offsets = drawn["file"].cpu().numpy(), drawn["offset"].cpu().numpy()
    out = np.zeros((len(category), time), np.float32)
    for b, (k, n) in enumerate(zip(category, count)):
        pool = rows[k]
        for slot in range(n):
            row = pool[min(int(files[b, slot] * len(pool)), len(pool) - 1)]
            out[b] += bank.span(row, float(offsets[b, slot]), time)
    return torch.from_numpy(out)


def apply_noise(p: NoiseParams, x: Tensor, drawn: dict[str, Tensor]) -> Tensor:
    noise = noise_for(p, drawn, x.shape[-1]).to(device=x.device, dtype=x.dtype)
    return mix_at_snr(x, noise, drawn["snr"].to(x.device, x.dtype))
