"""What every training step shares, the dual-path step (`dpda.train.step`) and the baseline
steps (`dpda.train.baseline_steps`) alike: the checks on the model and the loss, autocast around
the forward and loss, and the guard that puts a skipped step's model buffers back.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from dpda.errors import UserError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ReduceFn = Callable[[torch.Tensor], Any]


class BufferGuard:
    """The model's buffers (BatchNorm running statistics and counters) as they were before a
    step's forward passes, put back when the step is skipped: a batch with a non-finite loss or
    gradient must leave the model exactly as it was, not only its weights (one loud file would
    otherwise write NaN into every running mean).

    The snapshot is one multi-tensor copy into storage allocated once; the finiteness check is
    one multi-tensor max-abs; neither syncs with the host. ``restore()`` is for a caller that
    already knows (from its one host sync) that the step was skipped; ``restore_if`` decides on
    the device with one ``where`` per buffer, for callers that cannot know (a GradScaler step).
    """

    def __init__(self, model: nn.Module) -> None:
        self.buffers = [b for b in model.buffers() if b.numel()]
        self.saved = [torch.empty_like(b) for b in self.buffers]
        self._floating = [b for b in self.buffers if b.is_floating_point()]

    def snapshot(self) -> list[torch.Tensor]:
        if self.buffers:
            torch._foreach_copy_(self.saved, self.buffers)
        return self.saved

    def finite(self, device: torch.device) -> torch.Tensor:
        """0-dim bool: every floating buffer finite (a forward that overflowed a running
        variance counts as a non-finite step even when its loss came out finite)."""
        if not self._floating:
            return torch.ones((), dtype=torch.bool, device=device)
        peaks = torch._foreach_norm(self._floating, ord=float("inf"))  # max |x|: NaN/inf propagate
        return torch.isfinite(torch.stack(peaks)).all().to(device)

    @torch.no_grad()
    def restore(self) -> None:
        if self.buffers:
            torch._foreach_copy_(self.buffers, self.saved)

    @torch.no_grad()
    def restore_if(self, skipped: torch.Tensor, saved: list[torch.Tensor]) -> None:
        for buffer, before in zip(self.buffers, saved):
            buffer.copy_(torch.where(skipped.to(buffer.device), before, buffer))


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager[Any]:
    """Autocast context for the forward and loss only (backward runs outside it, as recommended)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The (name, parameter) pairs a step updates; a model with none is a user error."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise UserError("train: the model has no trainable parameters (all requires_grad=False)")
    return named


def scalar_loss(loss: torch.Tensor) -> torch.Tensor:
    """``loss`` itself, refused unless it is 0-dim (the steps average per path, not per sample)."""
    if loss.dim() != 0:
        raise UserError(
            f"train: loss_fn must return a scalar (reduction='mean'), got shape {tuple(loss.shape)}"
        )
    return loss
