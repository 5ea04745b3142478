"""One training step of the dual-path method: the path gradients aligned into one update.

Paths: the original batch and K augmented copies (`augment.paths`; K = 1 is the dual path),
P = K + 1 gradients. Everything below is written for two paths; with P paths the buffer has P
rows (row p = path p's gradient, the last row ``.grad`` and the update), the passes run per path
(one forward over all P in `joint`, one vmapped pass over P in `batched`), and the alignment
works on the (U, P, P) Gram matrices of the rows (`dpda.align.path_gram`: one batched matmul per
chunk of blocks) with `dpda.align.multipath.path_coeffs`, then one fused update into the last
row. For P = 2 the alignment is the two-path aligner's (dots, rule, update), so K = 1 gives
the numbers of the two-path step bit for bit (tests/test_step_paths.py). Memory beyond plain
training: P - 1 gradient rows between steps (plus, in batched mode, P copies of the convolution
kernels and running statistics).

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
from collections.abc import Sequence
from dataclasses import fields
from typing import get_args

import torch
from torch import nn

from dpda.align import Aligner, AlignStats, Segments, combine_, segment_dots
from dpda.align import multipath, rules
from dpda.align.path_gram import combine_paths_, path_gram
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


_ORDER_STATE = "task_order_rng"  # path_state key of the task-order generator's state

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
    ``augmented_paths`` K (`augment.paths`): the step then takes K augmented batches (a list) and
    aligns K + 1 path gradients (the module docstring); K = 1 takes one tensor or a list of one.
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
        augmented_paths: int = 1,
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
        if augmented_paths < 1:
            raise UserError(f"augment.paths: {augmented_paths} augmented paths; give at least one")
        self.n_paths = augmented_paths + 1
        multipath.check_paths(aligner.name, self.n_paths)
        self.model, self.loss_fn, self.optimizer, self.aligner = model, loss_fn, optimizer, aligner
        self.path_state: dict = {}  # the K-path rule's state (P > 2; two paths keep it in the aligner)
        self._orders: torch.Generator | None = None  # PCGrad's / GradVac's task orders (P > 2)
        if scaler is not None and not scaler.is_enabled():
            scaler = None  # a disabled scaler is a no-op; the plain skip path applies
        self.mode, self.scaler, self.reduce_fn = mode, scaler, reduce_fn
        self.autocast_dtype = autocast_dtype
        self.clip_norm = None if clip_norm is None else float(clip_norm)
        self._params = [p for _, p in named]
        self.segments = Segments.from_parameters(named)
        self.segments.plan(first.device)  # the block layout's index tensors, built once, here
        self._guard = BufferGuard(model)
        # Row p: path p's gradient (rows 0..P-2 the extra buffer); the last row: the .grad storage.
        self._buffer = torch.zeros(self.n_paths, self.segments.numel, dtype=first.dtype, device=first.device)
        self._views: tuple[list[torch.Tensor], ...] = tuple([] for _ in range(self.n_paths))
        self._last = self.n_paths - 1
        offset = 0
        for p in self._params:
            n = p.numel()
            for row, views in enumerate(self._views):
                views.append(self._buffer[row, offset : offset + n].view_as(p))
            offset += n
        self._bind_grads(self._last)
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
        """Elements the step keeps between steps beyond ``.grad``: the gradient buffer's rows
        but the last (P - 1 rows), and in batched mode the per-path parameter copies and running
        statistics."""
        extra = self._batched.persistent_numel if self._batched is not None else 0
        return self._buffer[: self._last].numel() + extra

    def grad_buffers(self) -> torch.Tensor:
        """The (P, N) buffer: row 0 = g_orig, row p = path p's gradient; after the step the last
        row holds the update (for two paths: row 1 = g_aug, then the update)."""
        return self._buffer

    def _bind_grads(self, row: int) -> None:
        """Point every ``.grad`` at its view in ``row`` of the buffer: backward then accumulates
        straight into that path's row (no copy between the rows, one zeroing of both)."""
        for p, v in zip(self._params, self._views[row]):
            if p.grad is not v:
                p.grad = v

    def _backward(self, loss: torch.Tensor, retain_graph: bool = False) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward(retain_graph=retain_graph)

    def __call__(self, x_orig: torch.Tensor, x_aug: torch.Tensor | Sequence[torch.Tensor], y: torch.Tensor) -> StepStats:
        """One step on a batch of original waveforms, their augmented copies (one tensor, or one
        per augmented path) and the labels."""
        x_augs = [x_aug] if isinstance(x_aug, torch.Tensor) else list(x_aug)
        if len(x_augs) != self._last:
            raise UserError(f"train: {len(x_augs)} augmented batches for a step of {self._last} augmented paths")
        for xa in x_augs:
            if x_orig.shape != xa.shape:
                raise UserError(f"train: x_orig {tuple(x_orig.shape)} and x_aug {tuple(xa.shape)} differ in shape")
        xs = [x_orig, *x_augs]
        self._guard.snapshot()
        self._buffer.zero_()
        device = self._buffer.device
        amp = functools.partial(autocast, device, self.autocast_dtype)
        if self.mode == "separate":
            losses = []
            for p, x in enumerate(xs):
                self._bind_grads(p)
                with torch.profiler.record_function(_pass_name(p)):
                    with amp():
                        loss = scalar_loss(self.loss_fn(self.model(x), y))
                    self._backward(loss)
                losses.append(loss)
        elif self._batched is not None:
            self._bind_grads(self._last)
            with torch.profiler.record_function("dpda.pass.batched"):
                losses = self._batched(xs, y, amp, self._backward)
        else:
            b = x_orig.shape[0]
            with torch.profiler.record_function("dpda.pass.joint"):
                with amp():
                    logits = self.model(torch.cat(xs))
                    losses = [scalar_loss(self.loss_fn(logits[p * b : (p + 1) * b], y)) for p in range(len(xs))]
                for p, loss in enumerate(losses):
                    self._bind_grads(p)
                    self._backward(loss, retain_graph=p < self._last)
                del logits
        if self.reduce_fn is not None:
            self.reduce_fn(self._buffer)
        losses = [loss.detach() for loss in losses]
        with torch.profiler.record_function("dpda.align"):
            ok = self._guard.finite(device)
            if self.n_paths == 2:
                stats = self._align(self._buffer[0], self._buffer[1], losses[0], losses[1], ok)
            else:
                stats = self._align_paths(torch.stack(losses), ok)
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
                         path_loss=torch.stack([loss_o, loss_a.to(loss_o.dtype)]).to(torch.float64),
                         path_cos=st.cos.reshape(1), layer_path_cos=st.layer_cos.reshape(-1, 1),
                         **{k: getattr(st, k) for k in _FROM_ALIGN})

    def _order_generator(self, device: torch.device) -> torch.Generator:
        """The generator of the rules' random task orders (LibMTL's PCGrad and GradVac shuffle the
        tasks each step): seeded from torch's seed (the run's) when first needed, or restored from
        `path_state` (a resumed run continues the orders it would have drawn)."""
        if self._orders is None or self._orders.device != device:
            self._orders = torch.Generator(device=device)
            saved = self.path_state.get(_ORDER_STATE)
            if saved is not None:
                self._orders.set_state(saved)
            else:
                self._orders.manual_seed(torch.initial_seed())
        return self._orders

    def _align_paths(self, losses: torch.Tensor, buffers_ok: torch.Tensor) -> StepStats:
        """P > 2 paths: Gram matrices -> `multipath.path_coeffs` -> one fused update into the
        last row, the clip factor and the non-finite guard folded into the coefficients as for
        two paths. All tensor code on the device (no host sync)."""
        gram = path_gram(self._buffer, self.segments)  # (S, P, P)
        total = gram.sum(0, keepdim=True)
        finite = torch.isfinite(total).all() & torch.isfinite(losses).all() & buffers_ok.to(total.device)
        unit = total if self.aligner.granularity == "model" else gram
        orders = self._order_generator(total.device)
        before = dict(self.path_state)
        coeffs = multipath.path_coeffs(self.aligner.name, unit, options=self.aligner._options, state=self.path_state,
                                       generator=orders, strength=self.aligner.strength)
        for key, old in before.items():  # a step that does not count leaves the rule's state
            new = self.path_state.get(key)
            if key != _ORDER_STATE and isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor) \
                    and new.shape == old.shape:
                self.path_state[key] = torch.where(finite, new, old)
        self.path_state[_ORDER_STATE] = orders.get_state()  # checkpointed with the rule's state
        st = path_stats(gram, coeffs.expand(gram.shape[0], -1), losses)
        inv = _inv_scale(self.scaler, total.device)
        if inv is not None:
            for name in ("norm_orig", "norm_aug", "update_norm", "layer_norm_orig", "layer_norm_aug"):
                st[name] = st[name] * inv
        factor = torch.ones((), dtype=torch.float64, device=total.device)
        if self.clip_norm is not None:
            factor = (self.clip_norm / (st["update_norm"] + _EPS_CLIP)).clamp(max=1.0)
        bad = torch.full_like(factor, float("nan") if inv is not None else 0.0)
        factor = torch.where(finite, factor, bad)
        combine_paths_(self._buffer, coeffs * factor, self.segments, self._last)
        return StepStats(skipped=~finite, **st)

    def _optimizer_step(self, skipped: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            self.scaler.step(self.optimizer)  # its found-inf check is the one host sync
            self.scaler.update()
            self._guard.restore_if(skipped, self._guard.saved)  # the scaler's decision stays on its side
        elif bool(skipped):  # the one host sync of the step
            self._buffer[self._last].zero_()  # rare path: leave finite zeros in .grad, not NaN * 0
            self._guard.restore()
        else:
            self.optimizer.step()


def _pass_name(path: int) -> str:
    """Profiler range of one path's pass: `dpda.pass.orig`, else `dpda.pass.aug` (every augmented path)."""
    return "dpda.pass.orig" if path == 0 else "dpda.pass.aug"


def path_stats(gram: torch.Tensor, coeffs: torch.Tensor, losses: torch.Tensor) -> dict[str, torch.Tensor]:
    """The StepStats fields (but `skipped`) of P path gradients from their per-segment Gram
    matrices (S, P, P) and the update's coefficients (S, P): "aug" is the mean of the augmented
    paths (`dpda.train.step_stats`), pairs in `path_pairs` order. Tensor code, no host sync."""
    n_paths = gram.shape[-1]
    k = n_paths - 1
    # project onto (orig, mean of the augmented paths): G2 = M G M^T per segment
    proj = torch.zeros(2, n_paths, dtype=gram.dtype, device=gram.device)
    proj[0, 0] = 1.0
    proj[1, 1:] = 1.0 / k
    g2 = proj @ gram @ proj.T  # (S, 2, 2)
    oo_s, aa_s, oa_s = g2[:, 0, 0], g2[:, 1, 1], g2[:, 0, 1]
    oo, aa, oa = oo_s.sum(), aa_s.sum(), oa_s.sum()
    gc = (gram @ coeffs.unsqueeze(-1)).squeeze(-1)  # (S, P): u . g_p per segment
    u_sq = (coeffs * gc).sum().clamp_min(0)
    u_g = proj @ gc.sum(0)  # u . g_orig, u . g_aug-mean
    i, j = torch.triu_indices(n_paths, n_paths, 1, device=gram.device)  # row-major: path_pairs order
    total = gram.sum(0)
    diag_s = gram.diagonal(dim1=1, dim2=2)  # (S, P)
    diag = total.diagonal()
    cos = rules.cosine(oo, aa, oa)
    return {
        "cos": cos,
        "norm_orig": oo.clamp_min(0).sqrt(),
        "norm_aug": aa.clamp_min(0).sqrt(),
        "conflict": cos < 0,
        "cos_update_orig": rules.cosine(u_sq, oo, u_g[0]),
        "cos_update_aug": rules.cosine(u_sq, aa, u_g[1]),
        "update_norm": u_sq.sqrt(),
        "loss_orig": losses[0],
        "loss_aug": losses[1:].mean(),
        "layer_cos": rules.cosine(oo_s, aa_s, oa_s),
        "layer_norm_orig": oo_s.clamp_min(0).sqrt(),
        "layer_norm_aug": aa_s.clamp_min(0).sqrt(),
        "path_loss": losses.to(torch.float64),
        "path_cos": rules.cosine(diag[i], diag[j], total[i, j]),
        "layer_path_cos": rules.cosine(diag_s[:, i], diag_s[:, j], gram[:, i, j]),
    }
