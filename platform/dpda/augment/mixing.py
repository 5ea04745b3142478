"""Batched additive noise at an SNR and reverberation by an impulse response, on the input's device.

Why here and batched: the `noise` and `reverb` transforms run on the model's device inside the
step, per utterance parameters as tensors, no per-sample Python loop (the bank sampler reads the
noise and RIRs on the host; these functions only do arithmetic).
"""

from __future__ import annotations

import torch

_TINY = 1e-20  # an energy below this is silence (float32 audio at full scale has energy ~1)


def energy(x: torch.Tensor) -> torch.Tensor:
    """Mean square over the last dimension: (batch, time) -> (batch,)."""
    return x.pow(2).mean(dim=-1)


def mix_at_snr(x: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor | float) -> torch.Tensor:
    """x + g * noise with g per utterance so that energy(x) / energy(g * noise) = 10^(snr_db/10).

    `x`, `noise`: (batch, time); `snr_db`: (batch,) or a scalar, in dB (energy ratio over the whole
    crop). Silent noise or silent speech leaves x unchanged (g = 0), never NaN: there is no level
    to scale noise to, and silence plus noise at "an SNR" has no finite answer.
    """
    if noise.shape != x.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} != x shape {tuple(x.shape)}")
    snr = torch.as_tensor(snr_db, dtype=x.dtype, device=x.device).expand(x.shape[0])
    ex, en = energy(x), energy(noise)
    usable = (ex > _TINY) & (en > _TINY)
    gain = torch.where(usable, torch.sqrt(ex / en.clamp_min(_TINY) * torch.pow(10.0, -snr / 10)),
                       torch.zeros_like(ex))
    return x + gain[:, None] * noise


def direct_path(rir: torch.Tensor, rir_lengths: torch.Tensor) -> torch.Tensor:
    """(batch,) index of each RIR's direct path: its largest |sample| within its length."""
    valid = torch.arange(rir.shape[-1], device=rir.device)[None, :] < rir_lengths.to(rir.device)[:, None]
    return torch.where(valid, rir.abs(), torch.full_like(rir, -1.0)).argmax(dim=-1)


def reverberate(x: torch.Tensor, rir: torch.Tensor, rir_lengths: torch.Tensor,
                normalize: bool = False) -> torch.Tensor:
    """x convolved with its RIR, aligned on the direct path and cut to x's length.

    `x`: (batch, time); `rir`: (batch, L) zero-padded; `rir_lengths`: (batch,). The full
    convolution y = x * rir (FFT, length time + L - 1) is read from the RIR's peak p:
    out[t] = y[t + p], t < time. So the direct sound stays where the dry one was (a
    label-relevant onset does not move by the propagation delay), and the reverberant tail past
    the crop is dropped, as a crop of a longer reverberant recording would drop it.

    `normalize`: scale each output to the energy of its input (a RIR that is not unit-gain
    would otherwise change the level, which `gain` is for); off by default, as Kaldi's and
    SpeechBrain's reverberation keep the convolution's level.
    """
    batch, time = x.shape
    rir = rir.to(device=x.device, dtype=x.dtype)
    full = time + rir.shape[-1] - 1
    n = 1 << max(full - 1, 1).bit_length()  # power of two >= full: no circular wrap-around
    y = torch.fft.irfft(torch.fft.rfft(x, n=n) * torch.fft.rfft(rir, n=n), n=n)
    start = direct_path(rir, rir_lengths)
    out = y.gather(1, start[:, None] + torch.arange(time, device=x.device)[None, :])
    if normalize:
        ex, eo = energy(x), energy(out)
        out = out * torch.where(eo > _TINY, torch.sqrt(ex / eo.clamp_min(_TINY)), torch.zeros_like(eo))[:, None]
    return out
