"""RawNet2 anti-spoofing model (Tak et al., ICASSP 2021).

Sinc front end, 1-D residual blocks each followed by filter-wise feature map scaling (FMS: a
sigmoid gate per filter from its time average, applied as x * s + s), a GRU over time, and fully
connected layers on the last GRU state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dpda.errors import UserError
from dpda.models.sinc import SincConv, check_positive


class ResidualBlock1d(nn.Module):
    """Two kernel-3 convolutions with a skip, max-pool by 3, then FMS."""

    def __init__(self, in_channels: int, out_channels: int, first: bool = False) -> None:
        super().__init__()
        self.pre = (
            nn.Identity() if first else nn.Sequential(nn.BatchNorm1d(in_channels), nn.LeakyReLU(0.3))
        )
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.act = nn.LeakyReLU(0.3)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, padding=1)
        self.downsample = (
            nn.Conv1d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else nn.Identity()
        )
        self.pool = nn.MaxPool1d(3)
        self.fms = nn.Linear(out_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.act(self.bn2(self.conv1(self.pre(x)))))
        out = self.pool(out + self.downsample(x))
        scale = torch.sigmoid(self.fms(out.mean(dim=-1))).unsqueeze(-1)
        return out * scale + scale


class RawNet2(nn.Module):
    """Raw waveform (B, T) at 16 kHz -> logits (B, 2), class 1 = bona fide."""

    def __init__(
        self,
        sinc_filters: int = 20,
        sinc_kernel: int = 1024,
        sinc_learnable: bool = False,
        blocks: Sequence[Sequence[int]] = ((20, 20), (20, 20), (20, 128), (128, 128), (128, 128), (128, 128)),
        gru_hidden: int = 1024,
        gru_layers: int = 3,
        fc_hidden: int = 1024,
    ) -> None:
        super().__init__()
        check_positive("rawnet2", sinc_filters=sinc_filters, sinc_kernel=sinc_kernel, gru_hidden=gru_hidden,
                       gru_layers=gru_layers, fc_hidden=fc_hidden)
        pairs = [tuple(b) for b in blocks]
        if not pairs or any(len(p) != 2 for p in pairs) or pairs[0][0] != sinc_filters or any(
            a[1] != b[0] for a, b in zip(pairs, pairs[1:])
        ):
            raise UserError(
                f"model rawnet2: blocks must chain [in, out] pairs starting at sinc_filters={sinc_filters}, got {blocks!r}"
            )
        self.sinc = SincConv(sinc_filters, sinc_kernel, learnable=sinc_learnable)
        self.stem = nn.Sequential(nn.MaxPool1d(3), nn.BatchNorm1d(sinc_filters), nn.SELU(inplace=True))
        self.blocks = nn.Sequential(*(ResidualBlock1d(i, o, first=(n == 0)) for n, (i, o) in enumerate(pairs)))
        channels = pairs[-1][1]
        self.pre_gru = nn.Sequential(nn.BatchNorm1d(channels), nn.SELU(inplace=True))
        self.gru = nn.GRU(channels, gru_hidden, num_layers=gru_layers, batch_first=True)
        self.fc1 = nn.Linear(gru_hidden, fc_hidden)
        self.fc2 = nn.Linear(fc_hidden, 2)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.sinc(wave).abs())
        x = self.pre_gru(self.blocks(x))
        self.gru.flatten_parameters()
        out, _ = self.gru(x.transpose(1, 2))
        return self.fc2(self.fc1(out[:, -1]))
