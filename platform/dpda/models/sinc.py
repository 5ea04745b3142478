"""Sinc convolution: the first layer of raw-waveform detectors (SincNet, RawNet2, AASIST).

Each output channel is a band-pass FIR filter given only by its two cut-off frequencies, so the
first layer has an interpretable, mel-spaced frequency layout. The filters are either fixed at the
mel-spaced initialisation (as AASIST and the RawNet2 anti-spoofing system use) or learnable (the
cut-offs are parameters, as in SincNet).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dpda.errors import UserError


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


class SincConv(nn.Module):
    """Band-pass filter bank on (batch, time) or (batch, 1, time) -> (batch, channels, time').

    Band edges are mel-spaced between `min_hz` and Nyquist. `kernel_size` is made odd so filters
    are symmetric (linear phase). No padding: the output is `kernel_size - 1` samples shorter.
    `unit_gain`: the impulse responses divided by the sample rate (cut-offs in cycles per sample),
    so the passband gain is 1, as the released AASIST and RawNet2 code builds them; without it the
    gain is the sample rate (dpda's own models, trained that way).
    """

    def __init__(
        self,
        out_channels: int,
        kernel_size: int,
        sample_rate: int = 16_000,
        learnable: bool = False,
        min_hz: float = 0.0,
        min_band_hz: float = 50.0,
        unit_gain: bool = False,
    ) -> None:
        super().__init__()
        if out_channels < 1 or kernel_size < 3:
            raise UserError(f"sinc: need out_channels >= 1 and kernel_size >= 3, got {out_channels}, {kernel_size}")
        self.out_channels = out_channels
        self.kernel_size = kernel_size + 1 if kernel_size % 2 == 0 else kernel_size
        self.sample_rate = sample_rate
        self.learnable = learnable
        self.min_band_hz = min_band_hz
        self.gain = 1.0 / sample_rate if unit_gain else 1.0
        nyquist = sample_rate / 2.0
        mel = torch.linspace(float(hz_to_mel(torch.tensor(min_hz))), float(hz_to_mel(torch.tensor(nyquist))), out_channels + 1)
        edges = mel_to_hz(mel)
        low, high = edges[:-1], edges[1:]
        half = (self.kernel_size - 1) // 2
        self.register_buffer("t", torch.arange(-half, half + 1, dtype=torch.float32) / sample_rate, persistent=False)
        self.register_buffer("window", torch.hamming_window(self.kernel_size, periodic=False), persistent=False)
        if learnable:
            self.low_hz = nn.Parameter(low.clone())
            self.band_hz = nn.Parameter((high - low).clone())
        else:
            self.register_buffer("low_hz", low.clone())
            self.register_buffer("band_hz", (high - low).clone())

    def filters(self) -> torch.Tensor:
        """(out_channels, 1, kernel_size) band-pass impulse responses at the current cut-offs."""
        nyquist = self.sample_rate / 2.0
        if self.learnable:  # keep edges ordered and inside (0, Nyquist) whatever the optimiser does
            low = self.low_hz.abs()
            high = torch.clamp(low + self.min_band_hz + self.band_hz.abs(), max=nyquist)
        else:
            low, high = self.low_hz, self.low_hz + self.band_hz
        t = self.t.unsqueeze(0)
        # Ideal low-pass with cut-off f has impulse response 2 f sinc(2 f t); band-pass = difference.
        band = 2 * high.unsqueeze(1) * torch.sinc(2 * high.unsqueeze(1) * t) - 2 * low.unsqueeze(1) * torch.sinc(
            2 * low.unsqueeze(1) * t
        )
        return (band * self.window * self.gain).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 2:
            wave = wave.unsqueeze(1)
        if wave.dim() != 3 or wave.shape[1] != 1:
            raise UserError(f"sinc: expected a (batch, time) waveform batch, got shape {tuple(wave.shape)}")
        if wave.shape[-1] < self.kernel_size:
            raise UserError(f"sinc: input of {wave.shape[-1]} samples is shorter than the {self.kernel_size}-tap filters")
        return nn.functional.conv1d(wave, self.filters().to(wave.dtype))

    def extra_repr(self) -> str:
        return f"{self.out_channels}, kernel_size={self.kernel_size}, learnable={self.learnable}"


def check_positive(model: str, **values: float) -> None:
    """UserError naming the first parameter that is not > 0."""
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0 or math.isnan(value):
            raise UserError(f"model {model}: {key} must be > 0, got {value!r}")
