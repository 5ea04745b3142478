"""The per-epoch train means and the conflict fraction: one definition for the console, Tune,
results.csv and the telemetry's `epochs` table.

A skipped step (non-finite loss or gradient, no update taken) counts in `n` but in none of the
means: its losses are not finite and its gradients were never applied, so its cosine says
nothing about the training that happened. The report's SQL applies the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


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
        if not stats["skipped"]:
            self.n_ok += 1
            self.loss_orig += stats["loss_orig"]
            self.loss_aug += stats["loss_aug"]
            self.conflicts += bool(stats["conflict"])

    def means(self) -> dict[str, float | None]:
        """train_loss_orig, train_loss_aug and conflict_fraction over the non-skipped steps
        (None when every step was skipped)."""
        mean = (lambda total: total / self.n_ok) if self.n_ok else (lambda total: None)
        return {"train_loss_orig": mean(self.loss_orig), "train_loss_aug": mean(self.loss_aug),
                "conflict_fraction": mean(float(self.conflicts))}
