"""Frequency masking (`band_drop`): zero one drawn band of each utterance's spectrum, via the FFT.

Batched on the input's device: one rfft of the batch, a (batch, bins) mask built from each row's
drawn edges, one irfft at the input's length. The band is removed exactly (its rfft bins are 0).
"""

from __future__ import annotations

import torch
from pydantic import model_validator
from torch import Tensor

from dpda import SAMPLE_RATE
from dpda.augment.ranges import Range, TransformParams, uniform
from dpda.typed import relation_error


class BandDropParams(TransformParams):
    """A band of width `width_hz` centred on `centre_hz` (both drawn per utterance) is zeroed;
    the band is clipped to [0, Nyquist]."""

    centre_hz: Range = [100.0, 7000.0]
    width_hz: Range = [100.0, 1000.0]

    @model_validator(mode="after")
    def _inside_nyquist(self) -> BandDropParams:
        nyquist = SAMPLE_RATE / 2
        if not (0 <= self.centre_hz[0] and self.centre_hz[1] <= nyquist):
            raise relation_error("centre_hz", f"must lie in [0, {nyquist:g}] Hz, got {self.centre_hz}")
        if self.width_hz[0] <= 0:
            raise relation_error("width_hz", f"must be > 0 Hz, got {self.width_hz}")
        return self


def draw_band_drop(p: BandDropParams, batch: int, time: int, gen: torch.Generator | None,
                   device: torch.device, workspace: object = None) -> dict[str, Tensor]:
    centre = uniform(p.centre_hz, batch, gen, device)
    width = uniform(p.width_hz, batch, gen, device)
    return {"low_hz": (centre - width / 2).clamp_min(0), "high_hz": (centre + width / 2).clamp_max(SAMPLE_RATE / 2)}


def band_bins(time: int, low_hz: Tensor, high_hz: Tensor, sample_rate: float = SAMPLE_RATE) -> Tensor:
    """(batch, time // 2 + 1) bool: the rfft bins whose frequency lies in [low_hz, high_hz]."""
    freqs = torch.fft.rfftfreq(time, d=1.0 / sample_rate, device=low_hz.device, dtype=torch.float64)
    return (freqs >= low_hz.unsqueeze(-1)) & (freqs <= high_hz.unsqueeze(-1))


def band_drop(x: Tensor, low_hz: Tensor, high_hz: Tensor, sample_rate: float = SAMPLE_RATE) -> Tensor:
    """x with the band [low_hz, high_hz] (per row) removed; same shape and dtype."""
    time = x.shape[-1]
    spectrum = torch.fft.rfft(x, dim=-1)
    spectrum = spectrum.masked_fill(band_bins(time, low_hz, high_hz, sample_rate), 0)
    return torch.fft.irfft(spectrum, n=time, dim=-1).to(x.dtype)


def apply_band_drop(p: BandDropParams, x: Tensor, drawn: dict[str, Tensor]) -> Tensor:
    return band_drop(x, drawn["low_hz"], drawn["high_hz"])
