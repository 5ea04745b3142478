"""AASIST (Jung et al., ICASSP 2022): sinc front end, 2-D residual encoder, graph attention back end.

The sinc filter outputs are treated as a (frequency, time) image: |sinc(x)| is max-pooled by 3 in
both axes, then residual blocks pool time only, so the spectral axis keeps n_filters // 3 bins.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dpda.errors import UserError
from dpda.models.graph import GraphBackend
from dpda.models.sinc import SincConv, check_positive


class ResidualBlock2d(nn.Module):
    """Two (2, 3) convolutions with a skip connection, then max-pooling of time by 3.

    The first block of an encoder skips the input BatchNorm + SELU (its input is already normed).
    Without `pool_time` the frame rate is kept (SSL features come at 50 frames/s, not 16 kHz).
    With `preactivate=False` the first convolution reads the raw block input, as in the published
    SSL-AASIST (its `conv1(x)` ignores the BatchNorm + SELU output): the BatchNorm then exists,
    keeps its running statistics up to date in training, and does not change the output.
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False, pool_time: bool = True,
                 preactivate: bool = True) -> None:
        super().__init__()
        self.preactivate = preactivate
        self.pre = nn.Identity() if first else nn.Sequential(nn.BatchNorm2d(in_channels), nn.SELU(inplace=True))
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.SELU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(2, 3), padding=(0, 1))
        self.downsample = (
            nn.Conv2d(in_channels, out_channels, kernel_size=(1, 3), padding=(0, 1))
            if in_channels != out_channels
            else nn.Identity()
        )
        self.pool = nn.MaxPool2d((1, 3)) if pool_time else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivate:
            inner = self.pre(x)
        else:
            if self.training:
                with torch.no_grad():
                    self.pre(x)  # running statistics only, as the published block
            inner = x
        out = self.conv2(self.act(self.bn2(self.conv1(inner))))
        return self.pool(out + self.downsample(x))


def residual_encoder(blocks: Sequence[Sequence[int]], pool_time: bool = True, preactivate: bool = True) -> nn.Sequential:
    """Residual blocks from [[in, out], ...] channel pairs; the first one is a `first` block."""
    return nn.Sequential(
        *(ResidualBlock2d(int(i), int(o), first=(n == 0), pool_time=pool_time, preactivate=preactivate)
          for n, (i, o) in enumerate(blocks))
    )


def _check_blocks(model: str, blocks: Sequence[Sequence[int]]) -> None:
    pairs = [tuple(b) for b in blocks]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise UserError(f"model {model}: blocks must be a non-empty list of [in, out] channel pairs, got {blocks!r}")
    if pairs[0][0] != 1 or any(a[1] != b[0] for a, b in zip(pairs, pairs[1:])):
        raise UserError(f"model {model}: blocks must start with 1 input channel and chain ([a, b], [b, c], ...), got {blocks!r}")


class AASIST(nn.Module):
    """Raw waveform (B, T) at 16 kHz -> logits (B, 2), class 1 = bona fide.

    `preactivate=False` is the released clovaai code's residual block (its first convolution reads
    the block input, not the BatchNorm + SELU output) and `sinc_unit_gain=True` its filter scale
    (digital frequencies: unit passband gain): the `released` presets, whose weights were trained
    that way (dpda.models.released_aasist).
    """

    def __init__(
        self,
        sinc_filters: int = 70,
        sinc_kernel: int = 128,
        sinc_learnable: bool = False,
        blocks: Sequence[Sequence[int]] = ((1, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64)),
        gat_dims: Sequence[int] = (64, 32),
        pool_ratios: Sequence[float] = (0.5, 0.7, 0.5, 0.5),
        temperatures: Sequence[float] = (2.0, 2.0, 100.0, 100.0),
        preactivate: bool = True,
        sinc_unit_gain: bool = False,
    ) -> None:
        super().__init__()
        check_positive("aasist", sinc_filters=sinc_filters, sinc_kernel=sinc_kernel)
        _check_blocks("aasist", blocks)
        if sinc_filters < 3:
            raise UserError(f"model aasist: sinc_filters must be >= 3, got {sinc_filters}")
        self.sinc = SincConv(sinc_filters, sinc_kernel, learnable=sinc_learnable, unit_gain=sinc_unit_gain)
        self.stem = nn.Sequential(nn.MaxPool2d(3), nn.BatchNorm2d(1), nn.SELU(inplace=True))
        self.encoder = residual_encoder(blocks, preactivate=preactivate)
        self.backend = GraphBackend(
            channels=int(blocks[-1][1]),
            freq_nodes=sinc_filters // 3,
            gat_dims=gat_dims,
            pool_ratios=pool_ratios,
            temperatures=temperatures,
            node_pooling="max",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.sinc(wave).abs().unsqueeze(1)  # (B, 1, filters, time)
        return self.backend(self.encoder(self.stem(x)))
