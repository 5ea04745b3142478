"""Sizes and seed of the synthetic corpus.

Why a module of its own: `dpda synth --help` shows these defaults, and reading them must not
import torch (the generator in `dpda.data.synth` does).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from dpda.errors import UserError
from dpda.typed import Settings, describe

Size = Annotated[int, Field(ge=0)]
AtLeastOne = Annotated[int, Field(ge=1)]


class SynthConfig(Settings):
    """Sizes of the synthetic corpus. The defaults (about a minute on 2 cores) are what the demo
    detector needs to learn: with 300 training utterances the tiny LCNN stalled near 20-25% dev
    EER however long it trained; with 1200 it passed 13% in 4 epochs. Speakers: with 12 training
    voices (100 utterances each) its best dev EER stayed at 17% over 5 epochs; with 48 (25 each)
    it reached 12% by epoch 5 and 10% by epoch 9 (dual path, PCGrad, RawBoost 4, 1-s crops; one
    seed each). Dev, eval and ITW-style sets get new voices of their own, more of them
    than before so that no single voice weighs on an EER.

    A pydantic model: the bounds sit on the fields; `from_options` names the `dpda synth`
    option of a value it refuses."""

    model_config = ConfigDict(frozen=True)

    seed: int = 0
    train: Size = 1200
    dev: Size = 300
    eval: Size = 600
    itw: Size = 300
    min_seconds: float = 1.0
    max_seconds: float = 4.0
    bonafide_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    speakers_train: AtLeastOne = 48
    speakers_dev: AtLeastOne = 12
    speakers_eval: AtLeastOne = 16
    speakers_itw: AtLeastOne = 12
    batch_size: AtLeastOne = 32

    @model_validator(mode="after")
    def _durations(self) -> SynthConfig:
        if not 0.2 <= self.min_seconds <= self.max_seconds <= 30:
            raise ValueError("need 0.2 <= --min-seconds <= --max-seconds <= 30")
        return self

    @classmethod
    def from_options(cls, **values: Any) -> SynthConfig:
        """Validate command-line values; a refusal is one line naming the option
        (`synth: --bonafide-fraction: must be in (0, 1), got 1.5`)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors()[0]
            line = describe(error, cls)
            if error["loc"]:
                field = str(error["loc"][0])
                line = "--" + field.replace("_", "-") + line[len(field):]
            raise UserError(f"synth: {line}") from None
