"""One training step of the dual-path method: two path gradients aligned into one update.

The one-gradient baselines (plain DA, single path) are `dpda.train.baseline_steps`.

``DualPathStep`` keeps the two path gradients in ONE (2, P) buffer: row 0 holds the
original-path gradient, row 1 the augmented-path gradient and then the update. Every trainable
parameter's ``.grad`` is a view into the row of the pass being run (row 0 during the first
backward, row 1 during the second and after the step), so backward accumulates each path's
gradient in place: no copy between rows, one zeroing of the buffer per step. So the step costs
one flat gradient buffer beyond ``.grad``, the two rows can be all-reduced with one collective
(``reduce_fn``), and the aligned update is written in place into row 1, i.e. straight into
``.grad`` for ``optimizer.step()``.

Order inside a step: buffer snapshot (one multi-tensor copy) -> zero the (2, P) buffer ->
forward/backward path "orig" into row 0 -> forward/backward path "aug" into row 1 -> optional
``reduce_fn(buffer)`` -> per-segment dots (one pass, a fixed number of ops whatever the number
of tensors: `dpda.align.segments`) -> rule coefficients (tiny tensors) -> clip factor and
non-finite guard folded into the coefficients -> update written into ``.grad`` (one pass) ->
optimizer step. The passes run inside ``dpda.pass.*`` profiler ranges and the alignment inside
``dpda.align``, so a trace separates the step's own machinery from the model's work
(`dpda.train.op_count`).

Host syncs: exactly one per step, deciding whether to call ``optimizer.step()`` (a skipped step
must leave the optimizer state untouched, which no tensor-only trick can do for e.g. Adam's step
count). Without a scaler it is ``bool(finite)``; with a ``torch.amp.GradScaler`` it is the
scaler's own found-inf check inside ``scaler.step``. Everything else, the statistics included,
stays on the device until ``StepStats.to_host()``.

Mixed precision: the rules are positively homogeneous (align(s g_o, s g_a) = s align(g_o, g_a))
and cosines are scale-free, so the scaled gradients are aligned as they are and unscaled once,
by ``scaler.unscale_``, after alignment; norms in the statistics and the clip threshold use the
unscaled values. A non-finite path gradient or loss makes the update NaN so the scaler skips the
step and lowers its scale, exactly as for a plain AMP step.

Callers own ``model.train()``/``eval()``; the step owns ``.grad`` (no ``zero_grad`` needed, and
``zero_grad(set_to_none=True)`` by someone else is repaired at the next step).
"""

from __future__ import annotations

import functools
from dataclasses import fields
from typing import get_args

import torch
from torch import nn

from dpda.align import Aligner, AlignStats, Segments, combine_, segment_dots
from dpda.errors import UserError
from dpda.train.batched_pass import BatchedPass
from dpda.train.config import AlignConfig
from dpda.train.step_parts import BufferGuard, LossFn, ReduceFn, autocast, scalar_loss, trainable
from dpda.train.step_stats import StepStats

MODES: tuple[str, ...] = get_args(AlignConfig.model_fields["mode"].annotation)
"""How the two paths run (`align.mode`): the config's Literal, declared there."""
_EPS_CLIP = 1e-6  # same epsilon as torch.nn.utils.clip_grad_norm_
# Fields the aligner's statistics already carry under the same names.
_FROM_ALIGN = tuple(f.name for f in fields(AlignStats) if f.name in {g.name for g in fields(StepStats)})


def _inv_scale(scaler: torch.amp.GradScaler | None, device: torch.device) -> torch.Tensor | None:
    """1 / current loss scale as a float64 device tensor, without a host sync (None: no scaling)."""
    if scaler is None or not scaler.is_enabled():
        return None
    return scaler.scale(torch.ones((), device=device, dtype=torch.float32)).to(torch.float64).reciprocal()


class DualPathStep:
    """Dual-path training step: one gradient per path, aligned by ``aligner`` into one update.

    mode 'separate' (default): one forward + backward per path, BatchNorm statistics per path; the
    FLOPs equal one plain DA step over the doubled batch. mode 'joint': the published behaviour,
    one forward over ``torch.cat([x_orig, x_aug])`` (BatchNorm statistics across both paths),
    loss per half, two backward passes through the shared graph. mode 'batched': both paths as
    ONE vmapped forward/backward (`dpda.train.batched_pass`): per-path BatchNorm statistics and
    gradients as in 'separate', the launches of one pass; models it cannot run are refused with
    one UserError (recurrent layers, torchaudio's wav2vec 2.0).

    ``reduce_fn(buffer)`` (optional) is called on the (2, P) gradient buffer after both backward
    passes and before alignment, e.g. ``lambda t: dist.all_reduce(t.div_(world))`` for data
    parallel training with ONE collective for both paths (do not also wrap the model in DDP's
    automatic gradient sync). ``clip_norm`` clips the aligned update (after alignment) like
    ``clip_grad_norm_``. ``scaler`` is a ``torch.amp.GradScaler``; the step calls its
    ``scale``/``unscale_``/``step``/``update``. ``autocast_dtype`` (e.g. torch.float16 or
    torch.bfloat16) runs forward and loss under ``torch.autocast``; backward runs outside it.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        optimizer: torch.optim.Optimizer,
        aligner: Aligner,
        mode: str = "separate",
        clip_norm: float | None = None,
        scaler: torch.amp.GradScaler | None = None,
        reduce_fn: ReduceFn | None = None,
        autocast_dtype: torch.dtype | None = None,
    ):
        if mode not in MODES:
            raise UserError(f"align.mode: {mode!r} is not one of {', '.join(MODES)}")
        if clip_norm is not None and not (float(clip_norm) > 0):
            raise UserError(f"optim.clip_norm: {clip_norm!r} must be > 0")
        named = trainable(model)
        first = named[0][1]
        for n, p in named:
            if p.dtype != first.dtype or p.device != first.device:
                raise UserError(
                    f"train: parameter {n!r} is {p.dtype} on {p.device} but {named[0][0]!r} is "
                    f"{first.dtype} on {first.device}; the dual-path step needs one dtype and device"
                )
        self.model, self.loss_fn, self.optimizer, self.aligner = model, loss_fn, optimizer, aligner
        if scaler is not None and not scaler.is_enabled():
            scaler = None  # a disabled scaler is a no-op; the plain skip path applies
        self.mode, self.scaler, self.reduce_fn = mode, scaler, reduce_fn
        self.autocast_dtype = autocast_dtype
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self._params = [p for _, p in named]
        self.segments = Segments.from_parameters(named)
        self.segments.plan(first.device)  # the block layout's index tensors, built once, here
        self._guard = BufferGuard(model)
        # Row 0: original-path gradient (the one extra buffer); row 1: the .grad storage.
        self._buffer = torch.zeros(2, self.segments.numel, dtype=first.dtype, device=first.device)
        self._views: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        offset = 0
        for p in self._params:
            n = p.numel()
            for row, views in enumerate(self._views):
                views.append(self._buffer[row, offset : offset + n].view_as(p))
            offset += n
        self._bind_grads(1)
        if mode == "batched" and autocast_dtype is not None:
            raise UserError("align.mode: batched cannot run under autocast (optim.amp): inside vmap, convolutions "
                            "ignore autocast and would run in float32, unlike separate mode; use align.mode: "
                            "separate for mixed precision")
        self._batched = BatchedPass(model, loss_fn, named, self._buffer) if mode == "batched" else None

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the trainable parameter tensors, in the order of the layer_* statistics."""
        return self.segments.names

    @property
    def persistent_numel(self) -> int:
        """Elements the step keeps between steps beyond ``.grad``: row 0 of the gradient buffer,
        and in batched mode the per-path parameter copies and running statistics."""
        extra = self._batched.persistent_numel if self._batched is not None else 0
        return self._buffer[0].numel() + extra

    def grad_buffers(self) -> torch.Tensor:
        """The (2, P) buffer: row 0 = g_orig, row 1 = g_aug (and, after the step, the update)."""
        return self._buffer

    def _bind_grads(self, row: int) -> None:
        """Point every ``.grad`` at its view in ``row`` of the buffer: backward then accumulates
        straight into that path's row (no copy between the rows, one zeroing of both)."""
        for p, v in zip(self._params, self._views[row]):
            if p.grad is not v:
                p.grad = v

    def _backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward(retain_graph=retain_graph)

    def __call__(self, x_orig: torch.Tensor, x_aug: torch.Tensor, y: torch.Tensor) -> StepStats:
        """One step on a batch of original waveforms, their augmented copies and the labels."""
        if x_orig.shape != x_aug.shape:
            raise UserError(f"train: x_orig {tuple(x_orig.shape)} and x_aug {tuple(x_aug.shape)} differ in shape")
        self._guard.snapshot()
        g_orig, g_aug = self._buffer[0], self._buffer[1]
        self._buffer.zero_()
        amp = functools.partial(autocast, g_aug.device, self.autocast_dtype)
        if self.mode == "separate":
            self._bind_grads(0)
            with torch.profiler.record_function("dpda.pass.orig"):
                with amp():
                    loss_o = scalar_loss(self.loss_fn(self.model(x_orig), y))
                self._backward(loss_o)
            self._bind_grads(1)
            with torch.profiler.record_function("dpda.pass.aug"):
                with amp():
                    loss_a = scalar_loss(self.loss_fn(self.model(x_aug), y))
                self._backward(loss_a)
        elif self._batched is not None:
            self._bind_grads(1)
            with torch.profiler.record_function("dpda.pass.batched"):
                loss_o, loss_a = self._batched(x_orig, x_aug, y, amp, self._backward)
        else:
            b = x_orig.shape[0]
            with torch.profiler.record_function("dpda.pass.joint"):
                with amp():
                    logits = self.model(torch.cat([x_orig, x_aug]))
                    loss_o = scalar_loss(self.loss_fn(logits[:b], y))
                    loss_a = scalar_loss(self.loss_fn(logits[b:], y))
                self._bind_grads(0)
                self._backward(loss_o, retain_graph=True)
                self._bind_grads(1)
                self._backward(loss_a)
                del logits
        if self.reduce_fn is not None:
            self.reduce_fn(self._buffer)
        with torch.profiler.record_function("dpda.align"):
            stats = self._align(g_orig, g_aug, loss_o.detach(), loss_a.detach(), self._guard.finite(g_aug.device))
        self._optimizer_step(stats.skipped)
        return stats

    def _align(self, g_orig: torch.Tensor, g_aug: torch.Tensor, loss_o: torch.Tensor, loss_a: torch.Tensor,
               buffers_ok: torch.Tensor) -> StepStats:
        valid = torch.isfinite(loss_o) & torch.isfinite(loss_a) & buffers_ok
        dots = segment_dots(g_orig, g_aug, self.segments)
        coeffs, st = self.aligner.solve(dots, valid=valid)
        inv = _inv_scale(self.scaler, g_aug.device)
        if inv is not None:
            st = st.scale_norms(inv)
        finite = st.finite
        factor = torch.ones((), dtype=torch.float64, device=g_aug.device)
        if self.clip_norm is not None:
            factor = (self.clip_norm / (st.update_norm + _EPS_CLIP)).clamp(max=1.0)
        # Non-finite: coefficient 0 (the step is then skipped and .grad zeroed) or NaN (so the
        # scaler sees it, skips the step and lowers its scale; .grad then holds NaN until the next step).
        bad = torch.full_like(factor, float("nan") if inv is not None else 0.0)
        factor = torch.where(finite, factor, bad)
        coeffs = coeffs.scaled(factor)
        combine_(g_orig, g_aug, coeffs.a, coeffs.b, self.segments, out=g_aug)
        return StepStats(loss_orig=loss_o, loss_aug=loss_a, skipped=~finite,
                         **{k: getattr(st, k) for k in _FROM_ALIGN})

    def _optimizer_step(self, skipped: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            self.scaler.step(self.optimizer)  # its found-inf check is the one host sync
            self.scaler.update()
            self._guard.restore_if(skipped, self._guard.saved)  # the scaler's decision stays on its side
        elif bool(skipped):  # the one host sync of the step
            self._buffer[1].zero_()  # rare path: leave finite zeros in .grad, not NaN * 0
            self._guard.restore()
        else:
            self.optimizer.step()
