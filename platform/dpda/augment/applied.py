"""What one batch's utterances received, tallied from the pipeline's mask on its device.

Why on the device: telemetry records it every step, and the step already makes its one host
sync (`StepStats.to_host`); the tally is fixed-size tensor code (no `unique`/`bincount`, whose
output size needs a sync), so it rides along in that same transfer.

- per leaf (mask bit j): the utterances whose mask has bit j set (`counts`, (L,));
- the histogram of mask values: the batch's masks sorted, each distinct value once at the front
  of `masks` with its utterance count in `n` (padding: n = 0), (B,) each.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AppliedTransforms:
    """One batch's applied-transforms tally, as device tensors (int64)."""

    counts: Tensor
    """(L,): utterances that received leaf j (mask bit j)."""
    masks: Tensor
    """(B,): the distinct mask values, ascending, then padding."""
    n: Tensor
    """(B,): utterances with mask `masks[i]`; 0 marks padding."""

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> AppliedTransforms:
        """No augmented path: no leaves, no utterances (telemetry writes empty lists)."""
        none = torch.zeros(0, dtype=torch.int64, device=device)
        return cls(none, none, none)


def tally(mask: Tensor, n_leaves: int) -> AppliedTransforms:
    """Counts per leaf (popcount per bit) and the histogram of the (B,) int64 `mask`; no host sync."""
    mask = mask.reshape(-1).to(torch.int64)
    bits = torch.arange(n_leaves, dtype=torch.int64, device=mask.device)
    counts = ((mask.unsqueeze(1) >> bits) & 1).sum(0)
    ordered = mask.sort().values
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    group = first.cumsum(0) - 1  # index of each utterance's distinct value
    n = torch.zeros_like(ordered).scatter_add_(0, group, torch.ones_like(ordered))
    masks = torch.zeros_like(ordered).scatter_(0, group, ordered)  # equal values per group: deterministic
    return AppliedTransforms(counts, masks, n)
