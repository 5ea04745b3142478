"""The per-epoch train means and the conflict fraction, for the console, Tune, results.csv and
the telemetry's `epochs` table.

The conflict fraction is `dpda_analysis.conflict`'s definition (the report reads the same one):
a skipped step (non-finite loss or gradient, no update taken) counts in `n` but in none of the
means, since its losses are not finite and its gradients were never applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dpda_analysis.conflict import conflict_fraction, step_counts


@dataclass
class EpochTally:
    """Running sums over the steps of one epoch."""

    n: int = 0
    n_ok: int = 0
    loss_orig: float = 0.0
    loss_aug: float = 0.0
    conflicts: int = 0

    def add(self, stats: Mapping[str, Any]) -> None:
        """Count one step (`StepStats.to_host()`)."""
        self.n += 1
        counted, conflicts = step_counts(stats["skipped"], stats["conflict"])
        self.n_ok += counted
        self.conflicts += conflicts
        if counted:
            self.loss_orig += stats["loss_orig"]
            self.loss_aug += stats["loss_aug"]

    def means(self) -> dict[str, float | None]:
        """train_loss_orig, train_loss_aug and conflict_fraction over the non-skipped steps
        (None when every step was skipped)."""
        mean = (lambda total: total / self.n_ok) if self.n_ok else (lambda total: None)
        fraction = conflict_fraction(self.conflicts, self.n_ok)
        return {"train_loss_orig": mean(self.loss_orig), "train_loss_aug": mean(self.loss_aug),
                "conflict_fraction": None if math.isnan(fraction) else fraction}
