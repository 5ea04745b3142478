"""The baseline steps, one gradient each: plain DA (`augment.mode: dual` without alignment, as
one batch) and single path (`augment.mode: none` / `augmented`). They share everything but the
forward (`_one_gradient_step`), and return the dual-path step's `StepStats` so telemetry takes
either: the pairwise fields, with no second gradient to compare, are NaN.

Host syncs: one per step, deciding whether to call ``optimizer.step()`` (``bool(skipped)``, or
the GradScaler's found-inf check inside ``scaler.step``), as in `dpda.train.step`.
"""

from __future__ import annotations

from typing import Callable, TypedDict, Unpack

import torch
from torch import nn

from dpda.train.step_parts import BufferGuard, LossFn, ReduceFn, autocast, scalar_loss, trainable
from dpda.train.step_stats import StepStats

Forward = Callable[[], tuple[torch.Tensor, torch.Tensor | None]]
"""Runs the model and the loss: (loss of the original path, loss of the augmented path or None)."""


class StepOptions(TypedDict, total=False):
    """The keyword settings of both baseline steps; an absent one is None (off).

    clip_norm: clip the gradient like ``clip_grad_norm_``. scaler: a ``torch.amp.GradScaler``.
    reduce_fn: called once on a flat vector of all gradients (data parallel). autocast_dtype:
    forward and loss under ``torch.autocast`` (backward outside it)."""

    clip_norm: float | None
    scaler: torch.amp.GradScaler | None
    reduce_fn: ReduceFn | None
    autocast_dtype: torch.dtype | None


def plain_da_step(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    x_orig: torch.Tensor,
    x_aug: torch.Tensor,
    y: torch.Tensor,
    **options: Unpack[StepOptions],
) -> StepStats:
    """The DA baseline: one forward/backward over the concatenated batch [x_orig; x_aug].

    The loss is the mean of the two halves' mean losses, which for a mean-reduced loss (class
    weights included) equals the loss over the concatenated batch with labels [y; y]. Its one
    gradient is of the mixed batch, so only update_norm carries it in the statistics.
    """
    b = x_orig.shape[0]

    def forward() -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(torch.cat([x_orig, x_aug]))
        return scalar_loss(loss_fn(logits[:b], y)), scalar_loss(loss_fn(logits[b:], y))

    return _one_gradient_step(model, optimizer, forward, x_orig.device, options)


def single_path_step(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    **options: Unpack[StepOptions],
) -> StepStats:
    """No-DA (or augmented-only) training: one forward/backward on the batch as given.

    Its loss and gradient are reported in the *_orig fields; *_aug and pairwise fields are NaN.
    """
    return _one_gradient_step(model, optimizer, lambda: (scalar_loss(loss_fn(model(x), y)), None), x.device, options)


def _one_gradient_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, forward: Forward, device: torch.device, options: StepOptions
) -> StepStats:
    """Buffer snapshot, ``forward`` under autocast, backward and optimizer step, buffers put back
    if the step was skipped. Two losses are averaged into the one that is differentiated."""
    model.zero_grad(set_to_none=True)
    guard = BufferGuard(model)
    saved = guard.snapshot()
    with autocast(device, options.get("autocast_dtype")):
        loss_o, loss_a = forward()
    loss = loss_o if loss_a is None else (loss_o + loss_a) / 2
    norm, skipped, layer_norm = _backward_and_step(model, optimizer, loss, guard.finite(loss_o.device), options)
    guard.restore_if(skipped, saved)
    return _stats(loss_o.detach(), None if loss_a is None else loss_a.detach(), norm, skipped, layer_norm)


def _backward_and_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, buffers_ok: torch.Tensor, options: StepOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward, optional reduce, norm/clip, non-finite skip, optimizer step.

    Returns (gradient norm before clipping, skipped, per-parameter-tensor gradient norms).
    """
    clip_norm, scaler, reduce_fn = options.get("clip_norm"), options.get("scaler"), options.get("reduce_fn")
    params = [p for _, p in trainable(model)]
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if reduce_fn is not None:
        # One collective over all gradients: gather into one flat buffer (missing grads as
        # zeros, so every rank sends the same layout) and make each .grad a view into it.
        flat = torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros_like(p).reshape(-1) for p in params])
        reduce_fn(flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.view_as(p)
    if scaler is not None:
        # Non-finite buffers alone leave the gradients finite: poison them so the scaler's
        # found-inf check (made in unscale_) skips this step too.
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            poison = torch.where(buffers_ok.to(grads[0].device), 1.0, float("nan")).to(grads[0].dtype)
            torch._foreach_mul_(grads, poison)
        scaler.unscale_(optimizer)
    present = [i for i, p in enumerate(params) if p.grad is not None]
    layer_norm = torch.zeros(len(params), dtype=torch.float64, device=params[0].device)
    if present:
        norms = torch._foreach_norm([params[i].grad for i in present])  # batched, as clip_grad_norm_
        layer_norm[present] = torch.stack(norms).to(torch.float64)
    norm = torch.linalg.vector_norm(layer_norm)
    if clip_norm is not None:
        torch.nn.utils.clip_grads_with_norm_(params, clip_norm, norm)
    skipped = ~(torch.isfinite(norm) & torch.isfinite(loss.detach()) & buffers_ok.to(norm.device))
    if scaler is not None:
        scaler.step(optimizer)  # its found-inf check is the one host sync
        scaler.update()
    elif not bool(skipped):  # the one host sync of the step
        optimizer.step()
    return norm, skipped, layer_norm


def _stats(
    loss_o: torch.Tensor, loss_a: torch.Tensor | None, norm: torch.Tensor, skipped: torch.Tensor, layer_norm: torch.Tensor
) -> StepStats:
    """StepStats of a one-gradient step: pairwise fields are NaN (no second gradient to compare).

    single path (``loss_a`` None): the gradient is reported as the 'orig' one (norm_orig,
    layer_norm_orig) and loss_aug is NaN; plain DA: its one gradient is of the mixed batch, so
    only update_norm carries it.
    """
    single = loss_a is None
    nan = torch.full((), float("nan"), dtype=torch.float64, device=norm.device)
    nan_l = torch.full_like(layer_norm, float("nan"))
    return StepStats(
        loss_orig=loss_o,
        loss_aug=torch.full_like(loss_o, float("nan")) if loss_a is None else loss_a,
        cos=nan,
        norm_orig=norm if single else nan,
        norm_aug=nan,
        conflict=torch.zeros((), dtype=torch.bool, device=norm.device),
        cos_update_orig=torch.ones_like(nan) if single else nan,
        cos_update_aug=nan,
        update_norm=norm,
        skipped=skipped,
        layer_cos=nan_l,
        layer_norm_orig=layer_norm if single else nan_l,
        layer_norm_aug=nan_l,
        path_loss=torch.zeros(0, dtype=torch.float64, device=norm.device),  # no paths (schema: paths [])
        path_cos=torch.zeros(0, dtype=torch.float64, device=norm.device),
        layer_path_cos=torch.zeros(layer_norm.shape[0], 0, dtype=torch.float64, device=norm.device),
    )
