"""XLSR-Mamba back end (Xiao & Das, 2024), as published with DPDA (nets/mamba.py, nets/mamba_blocks.py).

SSL features (B, frames, 1024) -> Linear to d_model -> BatchNorm + SELU -> dropout -> two stacks
of Mamba blocks, one over the sequence and one over its time reversal -> RMSNorm -> attention
pooling over time per direction -> concatenation -> Linear -> dropout -> Linear to 2 logits.

A Mamba block (mamba_ssm 1.x `Block` with `fused_add_norm`, `residual_in_fp32`, RMSNorm) adds its
input to the residual stream, normalises it and applies the Mamba mixer (`MambaMixer`: input
projection, causal depthwise convolution, SiLU, input-dependent selective scan, SiLU gate,
output projection). The published encoder closes each direction with
`RMSNorm(encoder input + residual stream)`, where the residual stream is the one the last block
received: the last block's mixer output is not used (nor is it, for the backward direction,
re-reversed). dpda keeps that forward exactly; the last block of each direction therefore has
parameters that are loaded and counted but never change the output, and dpda does not compute
them.

The selective scan runs mamba_ssm's CUDA kernel when the package is installed and the tensors
are on a GPU, and otherwise `selective_scan_torch`: the same math as mamba_ssm's
`selective_scan_ref`, with the recurrence evaluated as a parallel (Hillis-Steele) scan in
log2(frames) batched steps instead of a loop over frames: at the published size it is about 7x
faster than the loop on a CPU and saves about 5.5x more for the backward pass
(benchmarks/bench_selective_scan.py).

`published_to_dpda` maps a published state dict onto dpda's SSLDetector names:

| published                                  | dpda (SSLDetector)                          |
|--------------------------------------------|---------------------------------------------|
| `ssl_model.model.*` (fairseq)              | `frontend.wav2vec2.*` (ssl_weights.convert_fairseq) |
| `LL`                                       | `backend.proj`                              |
| `first_bn`                                 | `backend.stem.0`                            |
| `conformer.{forward,backward}_layers.<i>.{norm,mixer.*}` | `backend.{forward,backward}_layers.<i>.{norm,mixer.*}` |
| `conformer.norm_f`                         | `backend.norm_f`                            |
| `conformer.f_attention_pool`, `conformer.b_attention_pool` | `backend.forward_pool`, `backend.backward_pool` |
| `conformer.LL`                             | `backend.merge`                             |
| `conformer.classifier`                     | `backend.classifier`                        |

Mixer parameter names (in_proj, conv1d, x_proj, dt_proj, A_log, D, out_proj) are mamba_ssm's.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dpda.errors import UserError
from dpda.models.ssl_weights import convert_published


@functools.cache
def _cuda_kernel() -> Callable[..., torch.Tensor] | None:
    """mamba_ssm's fused selective-scan kernel, or None when the package cannot be imported."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):
        return None
    return selective_scan_fn


def linear_scan(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """h with h_t = a_t * h_{t-1} + b_t along `dim` (h_{-1} = 0), in ceil(log2 T) batched steps.

    Hillis-Steele inclusive scan of the associative map (a, b) o (a', b') = (a a', a b' + b).
    """
    length = a.shape[dim]
    step = 1
    while step < length:
        head_b, head_a = b.narrow(dim, 0, step), a.narrow(dim, 0, step)
        tail_a = a.narrow(dim, step, length - step)
        b = torch.cat([head_b, b.narrow(dim, step, length - step) + tail_a * b.narrow(dim, 0, length - step)], dim)
        a = torch.cat([head_a, tail_a * a.narrow(dim, 0, length - step)], dim)
        step *= 2
    return b


def selective_scan_torch(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan in PyTorch: u, delta, z (batch, dim, L); A (dim, N); B, C (batch, N, L); D,
    delta_bias (dim,). Computed in float32, returned in u's dtype, as mamba_ssm's reference:

    delta <- softplus(delta + delta_bias); h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t;
    y_t = C_t . h_t + D u_t; out = y * silu(z).
    """
    dtype = u.dtype
    u, delta = u.float(), delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A.float()))
    drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B.float(), u)
    y = torch.einsum("bdln,bnl->bdl", linear_scan(decay, drive, dim=2), C.float())
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    return y.to(dtype)


def selective_scan(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """The selective scan of `selective_scan_torch`, on mamba_ssm's kernel for CUDA tensors when
    mamba_ssm is installed."""
    kernel = _cuda_kernel() if u.is_cuda else None
    scan = kernel if kernel is not None else selective_scan_torch
    return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


class MambaMixer(nn.Module):
    """The Mamba (S6) mixer of mamba_ssm 1.x `Mamba`: (B, L, d_model) -> (B, L, d_model).

    Same parameters, names, shapes and initialisation (dt_rank = ceil(d_model / 16); A = 1..N per
    channel, stored as log; D = 1; dt bias = softplus^-1 of log-uniform [dt_min, dt_max])."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> None:
        super().__init__()
        d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)  # (B, d_inner, L) each
        u = F.silu(self.conv1d(u)[..., :length])  # causal: keep the first L outputs
        dt, B, C = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.linear(dt, self.dt_proj.weight).transpose(1, 2)
        y = selective_scan(u, delta, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2),
                           self.D.float(), z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))


class MambaBlock(nn.Module):
    """Residual add, RMSNorm, Mamba mixer; returns (mixer output, residual stream in float32)."""

    def __init__(self, d_model: int, eps: float = 1e-5, **mixer_args) -> None:
        super().__init__()
        self.mixer = MambaMixer(d_model, **mixer_args)
        self.norm = nn.RMSNorm(d_model, eps=eps)

    def add(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        return (hidden.float() + residual) if residual is not None else hidden.float()

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        residual = self.add(hidden, residual)
        return self.mixer(self.norm(residual.to(self.norm.weight.dtype))), residual


class MambaHead(nn.Module):
    """SSL features (B, frames, in_dim) -> logits (B, 2): the published XLSR-Mamba back end."""

    def __init__(self, in_dim: int, d_model: int, num_layers: int, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        for key, value in dict(d_model=d_model, num_layers=num_layers, d_state=d_state, d_conv=d_conv,
                               expand=expand).items():
            if not isinstance(value, int) or value < 1:
                raise UserError(f"model ssl_mamba: {key} must be a positive integer, got {value!r}")
        if not 0 <= dropout < 1:
            raise UserError(f"model ssl_mamba: dropout must be in [0, 1), got {dropout!r}")
        self.proj = nn.Linear(in_dim, d_model)
        self.stem = nn.Sequential(nn.BatchNorm2d(1), nn.SELU(inplace=True))
        mixer = dict(d_state=d_state, d_conv=d_conv, expand=expand)
        self.forward_layers = nn.ModuleList(MambaBlock(d_model, **mixer) for _ in range(num_layers))
        self.backward_layers = nn.ModuleList(MambaBlock(d_model, **mixer) for _ in range(num_layers))
        with torch.no_grad():  # mamba_ssm's GPT-2-style rescaling of the residual-path projections
            for block in (*self.forward_layers, *self.backward_layers):
                nn.init.kaiming_uniform_(block.mixer.out_proj.weight, a=math.sqrt(5))
                block.mixer.out_proj.weight /= math.sqrt(num_layers)
        self.norm_f = nn.RMSNorm(d_model, eps=1e-5)
        self.forward_pool = nn.Linear(d_model, 1)
        self.backward_pool = nn.Linear(d_model, 1)
        self.merge = nn.Linear(2 * d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, 2)

    @staticmethod
    def _residual_stream(layers: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        """The residual stream the last block receives, plus its input (what the published
        encoder normalises; the last mixer's output is discarded there, so it is not computed)."""
        hidden, residual = x, None
        for block in layers[:-1]:
            hidden, residual = block(hidden, residual)
        return layers[-1].add(hidden, residual)

    def _pool(self, pool: nn.Linear, states: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(pool(states), dim=1)  # (B, L, 1)
        return (weights.transpose(1, 2) @ states).squeeze(1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.proj(feats).unsqueeze(1)).squeeze(1)
        x = self.dropout(x)
        forward_states = self._residual_stream(self.forward_layers, x)
        backward_states = self._residual_stream(self.backward_layers, x.flip(1))
        f = self.norm_f((x.float() + forward_states).to(self.norm_f.weight.dtype))
        b = self.norm_f((x.float() + backward_states).to(self.norm_f.weight.dtype))
        pooled = torch.cat([self._pool(self.forward_pool, f), self._pool(self.backward_pool, b)], dim=1)
        return self.classifier(self.dropout(self.merge(pooled)))


_RULES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (r"^LL\.(.+)$", r"backend.proj.\1"),
    (r"^first_bn\.(.+)$", r"backend.stem.0.\1"),
    (r"^conformer\.((?:forward|backward)_layers\..+|norm_f\..+)$", r"backend.\1"),
    (r"^conformer\.f_attention_pool\.(.+)$", r"backend.forward_pool.\1"),
    (r"^conformer\.b_attention_pool\.(.+)$", r"backend.backward_pool.\1"),
    (r"^conformer\.LL\.(.+)$", r"backend.merge.\1"),
    (r"^conformer\.classifier\.(.+)$", r"backend.classifier.\1"),
]]


def published_to_dpda(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dpda `ssl_mamba` state dict from a published XLSR-Mamba one (table in the module docstring).

    Keys that fit no rule keep their published names, so a strict load names the first of them.
    """
    return convert_published(state, _RULES)
