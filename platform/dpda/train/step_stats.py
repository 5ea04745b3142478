"""The statistics of one training step, as every step kind returns them (dual-path and baseline).

The record is the telemetry contract's: its fields are `dpda_analysis.schema`'s STEP_STAT_KEYS,
LAYER_STAT_KEYS, PATH_STAT_KEYS then LAYER_PATH_STAT_KEYS, in that order (tests/test_step_stats.py
holds the two equal), written out here so that a reader and an IDE see them.

Many paths (`augment.paths`: the original and K augmented paths, P = K + 1): the pairwise fields
(`cos`, `norm_aug`, `conflict`, `cos_update_aug`, `layer_*`) compare the original path with "aug",
which for K > 1 is the MEAN of the K augmented paths' gradients (for K = 1 the one augmented
path, as before), and `loss_aug` is the mean of their losses; the per-path detail is in
`path_loss`, `path_cos` and `layer_path_cos`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import torch
from dpda_analysis import schema as S

from dpda.augment.applied import AppliedTransforms

_BOOL_STATS = frozenset(k for k in S.STEP_STAT_KEYS if pa.types.is_boolean(S.STEPS.field(k).type))


@dataclass
class StepStats:
    """Statistics of one step, as device tensors: 0-dim (float64 norms and cosines, the losses in
    the loss's dtype, bool flags) or (L,) float64 for layer_*, one entry per trainable parameter
    tensor in the step's ``layer_names`` order. Norms are of unscaled gradients (a GradScaler's
    scale removed). A one-gradient (baseline) step has no second gradient to compare: its pairwise
    fields are NaN (`dpda.train.baseline_steps`).
    """

    cos: torch.Tensor
    """Cosine of the original-path and augmented-path gradients (0 when a norm is 0)."""
    norm_orig: torch.Tensor
    """L2 norm of the original-path gradient."""
    norm_aug: torch.Tensor
    """L2 norm of the augmented-path gradient."""
    conflict: torch.Tensor
    """bool: the two path gradients conflict (cos < 0)."""
    cos_update_orig: torch.Tensor
    """Cosine of the aligned update and the original-path gradient."""
    cos_update_aug: torch.Tensor
    """Cosine of the aligned update and the augmented-path gradient."""
    update_norm: torch.Tensor
    """L2 norm of the update before clipping (``optim.clip_norm``)."""
    loss_orig: torch.Tensor
    """Mean loss of the original path (the only path of a single-path step)."""
    loss_aug: torch.Tensor
    """Mean loss of the augmented path."""
    skipped: torch.Tensor
    """bool: a loss, gradient or model buffer was non-finite and the optimizer step was not taken."""
    layer_cos: torch.Tensor
    """(L,) per parameter tensor: ``cos``."""
    layer_norm_orig: torch.Tensor
    """(L,) per parameter tensor: ``norm_orig``."""
    layer_norm_aug: torch.Tensor
    """(L,) per parameter tensor: ``norm_aug``."""
    path_loss: torch.Tensor
    """(P,) the mean loss of each path ("orig" first, then the augmented paths); (0,) for a
    one-gradient (baseline) step, whose run has no paths."""
    path_cos: torch.Tensor
    """(P (P-1) / 2,) cosine of every pair of path gradients, `dpda_analysis.schema.path_pairs`
    order (0 when a norm is 0); for two paths [cos]; (0,) for a baseline step."""
    layer_path_cos: torch.Tensor
    """(L, P (P-1) / 2) per parameter tensor: ``path_cos``."""

    def to_host(self, applied: AppliedTransforms | None = None) -> dict[str, Any]:
        """Python floats (bools where the schema column is boolean, lists for layer_* and path_*,
        a list of per-layer lists for layer_path_cos) in one device-to-host copy, keyed by the
        schema's names; with `applied` (the batch's applied-transforms tally) also the schema's
        AUGMENT_STAT_KEYS, in the same copy."""
        scalars = {k: getattr(self, k) for k in S.STEP_STAT_KEYS}
        vectors = {k: getattr(self, k) for k in (*S.LAYER_STAT_KEYS, *S.PATH_STAT_KEYS, *S.LAYER_PATH_STAT_KEYS)}
        tally = {}
        if applied is not None:
            # int64 mask values as two exact 32-bit halves: float64 holds integers up to 2**53 only
            tally = {"counts": applied.counts, "n": applied.n, "hi": applied.masks >> 32,
                     "lo": applied.masks & 0xFFFFFFFF}
        out = _host_dict(scalars, {**vectors, **tally}, _BOOL_STATS)
        for key in S.LAYER_PATH_STAT_KEYS:  # (L, pairs): one list of pairs per layer
            layers, pairs = getattr(self, key).shape
            out[key] = [out[key][i * pairs : (i + 1) * pairs] for i in range(layers)]
        if applied is None:
            return out
        counts, n, hi, lo = (out.pop(k) for k in tally)
        out["augment_counts"] = [int(c) for c in counts]
        out["augment_combos"] = [{"mask": int(h) << 32 | int(v), "n": int(k)} for h, v, k in zip(hi, lo, n) if k > 0]
        return out


def _host_dict(scalars: dict[str, torch.Tensor], vectors: dict[str, torch.Tensor], bools: frozenset[str]) -> dict[str, Any]:
    """Move all statistics to the host in ONE transfer (stack/cat on device, then .cpu())."""
    parts = [torch.stack([v.detach().reshape(()).to(torch.float64) for v in scalars.values()])]
    parts += [v.detach().reshape(-1).to(torch.float64) for v in vectors.values()]
    flat = torch.cat([p.to(parts[0].device) for p in parts]).cpu().tolist()
    out: dict[str, Any] = {}
    for i, k in enumerate(scalars):
        out[k] = bool(flat[i]) if k in bools else flat[i]
    pos = len(scalars)
    for k, v in vectors.items():
        n = v.numel()
        out[k] = flat[pos : pos + n]
        pos += n
    return out
