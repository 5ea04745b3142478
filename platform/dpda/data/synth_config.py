"""Sizes and seed of the synthetic corpus.

Why a module of its own: `dpda synth --help` shows these defaults, and reading them must not
import torch (the generator in `dpda.data.synth` does).
"""

from __future__ import annotations

from dataclasses import dataclass

from dpda.errors import UserError


@dataclass(frozen=True)
class SynthConfig:
    """Sizes of the synthetic corpus. The defaults (about a minute on 2 cores) are what the demo
    detector needs to learn: with 300 training utterances the tiny LCNN stalled near 20-25% dev
    EER however long it trained; with 1200 it passed 13% in 4 epochs. Speakers: with 12 training
    voices (100 utterances each) its best dev EER stayed at 17% over 5 epochs; with 48 (25 each)
    it reached 12% by epoch 5 and 10% by epoch 9 (dual path, PCGrad, RawBoost 4, 1-s crops; one
    seed each). Dev, eval and ITW-style sets get new voices of their own, more of them
    than before so that no single voice weighs on an EER."""

    seed: int = 0
    train: int = 1200
    dev: int = 300
    eval: int = 600
    itw: int = 300
    min_seconds: float = 1.0
    max_seconds: float = 4.0
    bonafide_fraction: float = 0.3
    speakers_train: int = 48
    speakers_dev: int = 12
    speakers_eval: int = 16
    speakers_itw: int = 12
    batch_size: int = 32

    def validate(self) -> None:
        for name in ("train", "dev", "eval", "itw"):
            if getattr(self, name) < 0:
                raise UserError(f"synth: --{name} must be >= 0")
        if not 0.2 <= self.min_seconds <= self.max_seconds <= 30:
            raise UserError("synth: need 0.2 <= --min-seconds <= --max-seconds <= 30")
        if not 0.0 < self.bonafide_fraction < 1.0:
            raise UserError("synth: --bonafide-fraction must be in (0, 1)")
        for name in ("speakers_train", "speakers_dev", "speakers_eval", "speakers_itw", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"synth: --{name.replace('_', '-')} must be >= 1")
