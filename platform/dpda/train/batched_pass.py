"""All path gradients from ONE batched forward/backward (`align.mode: batched`).

Written below for two paths; with P paths (`augment.paths`) the path axis has size P, the leaves
are (P, ...) and the running statistics end where P sequential passes leave them (the same
recursion applied P - 1 times: r <- r_p + (1-m)(r - r0), r0 the statistics before the step).

Why: on a GPU two passes over half batches cost far more than one pass over the whole batch
(kernels of half the size, twice the launches). ``torch.func.vmap`` over a path axis of size 2
runs both paths as one pass: every parameter enters as a (2, ...) per-path tensor (a stride-0
expansion, or a copy for convolution kernels), so a linear
layer becomes one batched matmul, a convolution one grouped convolution, and the ONE backward
gives each path's gradient in its own row, accumulated straight into the rows of the step's
(2, P) gradient buffer (each leaf's ``.grad`` is a (2, ...) view of it).

What stays exactly as in `separate` mode: each path's BatchNorm normalises with its own batch
statistics (vmap computes them per path), and the running statistics end where the two
sequential passes leave them: with r_o, r_a the per-path results of one update from r and
momentum m, separate mode ends at (1-m)((1-m) r + m mu_o) + m mu_a = r_a + (1-m)(r_o - r);
``num_batches_tracked`` counts two batches. Dropout draws differ per path (vmap's
``randomness="different"``), as two passes draw differently, so with dropout the gradients equal
separate mode's in distribution, not bit for bit.

What cannot run this way, refused in one line at construction (`unsupported_reason`): recurrent
layers (no batching rule for the fused RNN kernels), BatchNorm with ``momentum=None`` (its
cumulative average depends on the batch count in a way two paths in one call cannot reproduce),
torchaudio's wav2vec 2.0 / XLS-R encoder with layer drop > 0 (drawn with ``.item()`` per
layer; dpda's SSL presets have 0, and `dpda.models.ssl` runs the layers without the draw under
vmap), and autocast (inside vmap a convolution of batched tensors ignores autocast and runs in
float32, so bf16 would silently differ from separate mode; DualPathStep refuses it). Any other
failure of the batched pass surfaces at the first step as one UserError naming the model and
the key.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, vmap

from dpda.errors import UserError

KEY = "align.mode"


def unsupported_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot run its two paths as one vmapped pass, or None."""
    for name, module in model.named_modules():
        where = name or type(model).__name__
        if isinstance(module, nn.RNNBase):
            return f"{where} is a {type(module).__name__} (no batching rule for recurrent kernels)"
        norm = isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
        if norm and module.momentum is None:
            return f"{where} is a BatchNorm with momentum=None (a cumulative average)"
        wav2vec2 = type(module).__module__.startswith("torchaudio.models.wav2vec2")
        if wav2vec2 and getattr(module, "layer_drop", 0.0) > 0:
            return (f"{where} is torchaudio's wav2vec 2.0 with layer drop {module.layer_drop} (drawn with .item() "
                    f"per layer)")
    return None


class BatchedPass:
    """Runs every path in one vmapped forward/backward, writing path p's gradient into row p
    of ``buffer`` (shape (P, N), laid out as ``params``; P = the buffer's rows)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 named: list[tuple[str, nn.Parameter]], buffer: torch.Tensor) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise UserError(f"{KEY}: batched cannot run model {type(model).__name__}: {reason}; "
                            f"use {KEY}: separate")
        self.model, self.loss_fn = model, loss_fn
        self.n_paths = n = buffer.shape[0]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        # The leaves of the batched graph: one (2, ...) tensor per parameter, whose .grad is the
        # (2, ...) view of the step's buffer, so backward accumulates each path into its row.
        # Matrices and vectors enter as stride-0 expansions of the parameter itself (no memory, no
        # copy: the optimizer's in-place update shows through); convolution kernels (3-d and up)
        # as real per-path copies refreshed each step, so cuDNN sees dense weights.
        self.copies: list[torch.Tensor] = []
        self._copied: list[int] = []
        self.leaves: list[torch.Tensor] = []
        offset = 0
        for i, p in enumerate(self.params):
            size = p.numel()
            if p.dim() >= 3:
                leaf = torch.empty((n, *p.shape), dtype=p.dtype, device=p.device)
                self.copies.append(leaf)
                self._copied.append(i)
            else:
                leaf = p.detach().unsqueeze(0).expand(n, *p.shape)
            leaf.requires_grad_(True)
            leaf.grad = buffer[:, offset : offset + size].view(n, *p.shape)
            self.leaves.append(leaf)
            offset += size
        self._rows = [[c[k] for c in self.copies] for k in range(n)]
        self._copied_params = [self.params[i] for i in self._copied]
        self.norms = [(name, m) for name, m in model.named_modules()
                      if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        self.stat_names: list[str] = []
        self.stats: list[torch.Tensor] = []  # the model's running_mean / running_var tensors
        self.momenta: list[float] = []
        for name, m in self.norms:
            for attr in ("running_mean", "running_var"):
                self.stat_names.append(f"{name}.{attr}" if name else attr)
                self.stats.append(getattr(m, attr))
                self.momenta.append(1.0 - float(m.momentum))
        self.path_stats = [torch.empty((n, *s.shape), dtype=s.dtype, device=s.device) for s in self.stats]
        self._stat_rows = [[s[k] for s in self.path_stats] for k in range(n)]
        self._checked = False

    @property
    def persistent_numel(self) -> int:
        """Elements of the per-path copies (convolution kernels, running statistics)."""
        return sum(t.numel() for t in (*self.copies, *self.path_stats))

    def _losses(self, weights: dict[str, torch.Tensor], stats: dict[str, torch.Tensor], x: torch.Tensor,
                y: torch.Tensor, amp: Callable[[], contextlib.AbstractContextManager]) -> torch.Tensor:
        with amp():
            return self.loss_fn(functional_call(self.model, {**weights, **stats}, (x,)), y)

    def __call__(self, xs: Sequence[torch.Tensor], y: torch.Tensor,
                 amp: Callable[[], contextlib.AbstractContextManager],
                 backward: Callable[[torch.Tensor], None]) -> list[torch.Tensor]:
        """Forward every path (``xs``: one batch per path, the original first), backward once;
        returns the paths' losses. The buffer's rows must be zero (the step zeroes it)."""
        with torch.no_grad():
            if self.copies:
                for row in self._rows:
                    torch._foreach_copy_(row, self._copied_params)
            if self.stats:
                for row in self._stat_rows:
                    torch._foreach_copy_(row, self.stats)
        weights = dict(zip(self.names, self.leaves))
        stats = dict(zip(self.stat_names, self.path_stats))
        try:
            losses = vmap(lambda w, s, x: self._losses(w, s, x, y, amp), randomness="different")(
                weights, stats, torch.stack(list(xs)))
            if losses.dim() != 1:
                raise UserError(f"train: loss_fn must return a scalar (reduction='mean'), got shape "
                                f"{tuple(losses.shape[1:])}")
            with warnings.catch_warnings():
                # the (2, ...) .grad views have the buffer's row stride: accumulation is in place
                # and correct; torch only notes that the layout differs from the copies' own
                warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
                backward(losses.sum())
        except UserError:
            raise
        except Exception as exc:  # vmap/kernel refusals are RuntimeError, a few NotImplementedError
            if self._checked:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{KEY}: batched cannot run model {type(self.model).__name__} as one batched "
                            f"pass ({first[:200]}); use {KEY}: separate") from exc
        self._checked = True
        self._merge_running_stats()
        return list(losses.unbind(0))

    @torch.no_grad()
    def _merge_running_stats(self) -> None:
        """Running statistics where sequential passes leave them: two paths r_a + (1-m)(r_o - r),
        then each further path p: r_p + (1-m)(that - r)."""
        if not self.stats:
            return
        merged = self._stat_rows[0]
        for row in self._stat_rows[1:]:
            merged = torch._foreach_sub(merged, self.stats)
            torch._foreach_mul_(merged, self.momenta)
            torch._foreach_add_(merged, row)
        torch._foreach_copy_(self.stats, merged)
        for _, m in self.norms:  # functional_call ran the module's own counter update once
            if m.training and m.num_batches_tracked is not None:
                m.num_batches_tracked.add_(self.n_paths - 1)
