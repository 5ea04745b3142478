"""Additive noise at an SNR and reverberation, against independent references: the SNR measured
on the output equals the one asked for; the reverberated batch equals scipy's fftconvolve of
the same RIR, read from the RIR's peak."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from dpda.augment.mixing import direct_path, mix_at_snr, reverberate


def _batch(seed: int, batch: int = 6, time: int = 4000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, time, generator=g) * torch.rand(batch, 1, generator=g)
    noise = torch.randn(batch, time, generator=g) * 10 ** torch.empty(batch, 1).uniform_(-3, 1, generator=g)
    return x, noise


def test_the_achieved_snr_is_the_drawn_one_within_a_tenth_of_a_db():
    x, noise = _batch(0)
    snr = torch.tensor([-5.0, 0.0, 3.5, 10.0, 20.0, 40.0])
    y = mix_at_snr(x, noise, snr)
    added = (y - x).double()
    achieved = 10 * torch.log10(x.double().pow(2).sum(-1) / added.pow(2).sum(-1))
    assert torch.allclose(achieved, snr.double(), atol=0.1)
    assert (achieved - snr.double()).abs().max() < 1e-3  # float32 arithmetic, far inside 0.1 dB


def test_a_scalar_snr_applies_to_every_utterance():
    x, noise = _batch(1)
    assert torch.equal(mix_at_snr(x, noise, 5.0), mix_at_snr(x, noise, torch.full((6,), 5.0)))


def test_silent_noise_or_silent_speech_leaves_the_input_and_no_nan():
    x, noise = _batch(2)
    x[1] = 0.0
    noise[3] = 0.0
    y = mix_at_snr(x, noise, torch.full((6,), 10.0))
    assert torch.isfinite(y).all()
    assert torch.equal(y[1], x[1]) and torch.equal(y[3], x[3])
    assert not torch.equal(y[0], x[0])


def _rirs(seed: int, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Decaying noise RIRs with their peak somewhere after the start (a propagation delay)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((len(lengths), max(lengths)), np.float32)
    for b, n in enumerate(lengths):
        h = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.2 * n)) * 0.3
        h[rng.integers(0, n // 3)] = 1.5
        out[b, :n] = h
    return torch.from_numpy(out), torch.tensor(lengths)


def test_reverberation_equals_scipy_fftconvolve_aligned_on_the_direct_path():
    x, _ = _batch(3, batch=4, time=3000)
    rir, lengths = _rirs(3, [400, 1200, 90, 2500])
    y = reverberate(x, rir, lengths)
    assert y.shape == x.shape
    for b in range(4):
        h = rir[b, : lengths[b]].double().numpy()
        peak = int(np.argmax(np.abs(h)))
        want = fftconvolve(x[b].double().numpy(), h)[peak : peak + x.shape[1]]
        np.testing.assert_allclose(y[b].numpy(), want, rtol=1e-4, atol=1e-5)


def test_a_unit_impulse_late_in_the_rir_leaves_the_timing_unchanged():
    x, _ = _batch(4, batch=2, time=500)
    rir = torch.zeros(2, 300)
    rir[0, 0] = 1.0
    rir[1, 250] = 1.0  # a 250-sample propagation delay: aligned away
    y = reverberate(x, rir, torch.tensor([1, 300]))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    assert direct_path(rir, torch.tensor([1, 300])).tolist() == [0, 250]


def test_normalize_keeps_each_utterances_energy():
    x, _ = _batch(5, batch=3, time=2000)
    rir, lengths = _rirs(5, [300, 800, 50])
    y = reverberate(x, rir * 4, lengths, normalize=True)
    torch.testing.assert_close(y.pow(2).mean(-1), x.pow(2).mean(-1), rtol=1e-4, atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_and_cpu_agree():
    x, noise = _batch(6, batch=4)
    rir, lengths = _rirs(6, [300, 800, 50, 1000])
    snr = torch.tensor([0.0, 5.0, 10.0, 20.0])
    cpu = reverberate(mix_at_snr(x, noise, snr), rir, lengths)
    gpu = reverberate(mix_at_snr(x.cuda(), noise.cuda(), snr.cuda()), rir.cuda(), lengths.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
