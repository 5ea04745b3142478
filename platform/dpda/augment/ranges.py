"""The typed base of every transform's parameters: `[low, high]` ranges checked once, at load.

Why a base: each transform's parameters are user input (a config's `augment.pipeline` leaf); a
crossed range must fail as one line naming the key (`...gain.db: low 30 > high 10`), not draw
from an empty interval hours into training.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field, model_validator
from torch import Tensor

from dpda.typed import Settings, relation_error


class _RangeMark:
    """Field metadata: this list of two numbers is a `[low, high]` range."""


RANGE = _RangeMark()
Range = Annotated[list[float], Field(min_length=2, max_length=2), RANGE]
"""A `[low, high]` range of floats, low <= high (checked by `TransformParams`)."""


class TransformParams(Settings):
    """Parameters of one transform; every `Range` field is checked for low <= high."""

    @model_validator(mode="after")
    def _ordered_ranges(self) -> TransformParams:
        for name, info in type(self).model_fields.items():
            if any(item is RANGE for item in info.metadata):
                low, high = getattr(self, name)
                if low > high:
                    raise relation_error(name, f"low {low:g} > high {high:g}")
        return self


def uniform(bounds: list[float], batch: int, gen: torch.Generator | None, device: torch.device) -> Tensor:
    """`(batch,)` float64 draws from U(low, high), on the generator's device, moved to `device`."""
    where = gen.device if gen is not None else device
    u = torch.rand((batch,), generator=gen, device=where, dtype=torch.float64)
    return (bounds[0] + (bounds[1] - bounds[0]) * u).to(device)
