"""Nes2Net-X back end (Liu et al., IEEE T-IFS 2025; github Liu-Tianchi/Nes2Net_ASVspoof_ITW,
model_scripts/wav2vec2_Nes2Net_X.py), on the last XLS-R layer.

SSL features (B, frames, D) are cut into `outer` channel groups. Each of the first `outer - 1`
running sums (group 0, then block output + next group, ...) passes a Res2Net-style block whose
own `inner` sub-groups are stacked along a fourth axis and mixed by learned per-step weights
(the "-X" of Nes2Net-X), then ReLU and BatchNorm; the outputs and the untouched last group are
concatenated, BatchNorm + ReLU, pooled over time (mean, or attentive statistics `astp`) and
classified. The published model (`--Nes_ratio 8 8 --SE_ratio 1 --dilation 2 --pool_func mean`)
has 512,039 trainable back-end parameters.

`published_to_dpda` maps a published state dict onto dpda's SSLDetector names:

| published (wav2vec2_Nes2Net_X.py)                       | dpda (SSLDetector)                    |
|---------------------------------------------------------|---------------------------------------|
| `ssl_model.model.*` (fairseq)                           | `frontend.wav2vec2.*` (ssl_weights)   |
| `Nested_Res2Net_TDNN.Build_in_Res2Nets.<i>.weighted_sum.<j>` | `backend.blocks.<i>.mix.<j>`     |
| `Nested_Res2Net_TDNN.Build_in_Res2Nets.<i>.se.se.<k>`   | `backend.blocks.<i>.se.<k>`           |
| `Nested_Res2Net_TDNN.Build_in_Res2Nets.<i>.<rest>`      | `backend.blocks.<i>.<rest>` (conv1, bn1, convs, bns, conv3, bn3) |
| `Nested_Res2Net_TDNN.bns.<i>`                           | `backend.block_norms.<i>`             |
| `Nested_Res2Net_TDNN.bn`                                | `backend.norm`                        |
| `Nested_Res2Net_TDNN.pooling.linear{1,2}` (ASTP)        | `backend.pool.{hidden,scores}`        |
| `Nested_Res2Net_TDNN.fc`                                | `backend.classifier`                  |
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dpda.errors import UserError
from dpda.models.ssl_weights import convert_published

POOLS = ("mean", "astp")


class Res2MixBlock(nn.Module):
    """One inner block: 1x1 conv, `scale - 1` dilated convolutions over a growing stack of
    sub-groups (each step's stack mixed into one output by learned weights), 1x1 conv,
    squeeze-excitation, residual."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int, se_ratio: int) -> None:
        super().__init__()
        self.width = channels // scale
        inner = self.width * scale
        pad = (kernel_size // 2) * dilation
        self.conv1 = nn.Conv1d(channels, inner, kernel_size=1)
        self.bn1 = nn.BatchNorm1d(inner)
        self.convs = nn.ModuleList(
            nn.Conv2d(self.width, self.width, (kernel_size, 1), dilation=(dilation, 1), padding=(pad, 0))
            for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(self.width) for _ in range(scale - 1))
        # step i mixes a stack of i + 2 sub-group maps; initialised to their plain average
        self.mix = nn.ParameterList(nn.Parameter(torch.full((1, 1, 1, i + 2), 1.0 / (i + 2))) for i in range(scale - 1))
        self.conv3 = nn.Conv1d(inner, channels, kernel_size=1)
        self.bn3 = nn.BatchNorm1d(channels)
        self.se = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Conv1d(channels, channels // se_ratio, 1), nn.ReLU(),
                                nn.Conv1d(channels // se_ratio, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.bn1(F.relu(self.conv1(x))).split(self.width, dim=1)  # each (B, width, T)
        stack = groups[-1].unsqueeze(-1)  # (B, width, T, depth): the last sub-group starts it
        mixed = []
        for group, conv, bn, weights in zip(groups, self.convs, self.bns, self.mix):
            stack = bn(F.relu(conv(torch.cat((stack, group.unsqueeze(-1)), dim=-1))))
            mixed.append((stack * weights).sum(dim=-1))
        y = self.bn3(F.relu(self.conv3(torch.cat([*mixed, groups[-1]], dim=1))))
        return y * self.se(y) + x


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling (ECAPA-TDNN): attention-weighted mean and std over time."""

    def __init__(self, dim: int, bottleneck: int = 128) -> None:
        super().__init__()
        self.hidden = nn.Conv1d(dim, bottleneck, kernel_size=1)
        self.scores = nn.Conv1d(bottleneck, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.scores(torch.tanh(self.hidden(x))), dim=2)
        mean = (alpha * x).sum(dim=2)
        var = (alpha * x.square()).sum(dim=2) - mean.square()
        return torch.cat([mean, var.clamp(min=1e-10).sqrt()], dim=1)


class Nes2NetXHead(nn.Module):
    """SSL features (B, frames, in_dim) -> logits (B, 2): the nested Res2Net back end."""

    def __init__(self, in_dim: int, outer: int, inner: int, se_ratio: int, dilation: int,
                 kernel_size: int = 3, pool: str = "mean") -> None:
        super().__init__()
        if outer < 2 or in_dim % outer:
            raise UserError(f"model ssl_nes2net_x: outer must be >= 2 and divide the SSL dimension {in_dim}, got {outer}")
        group = in_dim // outer
        if not (2 <= inner <= group and 1 <= se_ratio <= group):
            raise UserError(f"model ssl_nes2net_x: inner must be in [2, {group}] and se_ratio in [1, {group}] "
                            f"(the group width in_dim / outer), got inner {inner}, se_ratio {se_ratio}")
        if pool not in POOLS:
            raise UserError(f"model ssl_nes2net_x: pool must be one of {', '.join(POOLS)}, got {pool!r}")
        self.group = group
        self.blocks = nn.ModuleList(Res2MixBlock(group, inner, kernel_size, dilation, se_ratio) for _ in range(outer - 1))
        self.block_norms = nn.ModuleList(nn.BatchNorm1d(group) for _ in range(outer - 1))
        self.norm = nn.BatchNorm1d(in_dim)
        self.pool = AttentiveStatsPool(in_dim) if pool == "astp" else None
        self.classifier = nn.Linear(in_dim * (2 if pool == "astp" else 1), 2)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        groups = feats.transpose(1, 2).split(self.group, dim=1)  # (B, group, T) each
        outs: list[torch.Tensor] = []
        for group, block, norm in zip(groups, self.blocks, self.block_norms):
            running = group if not outs else outs[-1] + group
            outs.append(norm(F.relu(block(running))))
        h = F.relu(self.norm(torch.cat([*outs, groups[-1]], dim=1)))
        return self.classifier(h.mean(dim=-1) if self.pool is None else self.pool(h))


_P = r"Nested_Res2Net_TDNN\."
_RULES: list[tuple[re.Pattern[str], str]] = [(re.compile(p), r) for p, r in [
    (_P + r"Build_in_Res2Nets\.(\d+)\.weighted_sum\.(\d+)", r"backend.blocks.\1.mix.\2"),
    (_P + r"Build_in_Res2Nets\.(\d+)\.se\.se\.(.+)", r"backend.blocks.\1.se.\2"),
    (_P + r"Build_in_Res2Nets\.(\d+)\.((?:conv1|bn1|convs|bns|conv3|bn3)\..+)", r"backend.blocks.\1.\2"),
    (_P + r"bns\.(\d+)\.(.+)", r"backend.block_norms.\1.\2"),
    (_P + r"bn\.(.+)", r"backend.norm.\1"),
    (_P + r"pooling\.linear1\.(.+)", r"backend.pool.hidden.\1"),
    (_P + r"pooling\.linear2\.(.+)", r"backend.pool.scores.\1"),
    (_P + r"fc\.(.+)", r"backend.classifier.\1"),
]]


def published_to_dpda(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """dpda `ssl_nes2net_x` state dict from a published Nes2Net-X one (table in the module
    docstring); keys no rule knows keep their published names, so a strict load names them."""
    return convert_published(state, _RULES)

