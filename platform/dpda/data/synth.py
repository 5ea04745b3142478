"""Deterministic synthetic corpus in the ASVspoof 2019 LA layout, plus an In-the-Wild-style set.

Why: the full pipeline (readers, checks, training, tuning, evaluation, reports) must run end to
end on any machine without licensed corpora, on data that is neither trivial nor hopeless.

Bona fide speech is source-filter synthesis: a glottal flow-derivative pulse train (pitch
contours with declination and accents, per-period jitter and shimmer, aspiration noise) shaped by
a cascade of time-varying formant resonators (per-speaker vocal-tract scaling, vowel targets with
coarticulated transitions), syllable rhythm with onset/offset envelopes and fricative noise
bursts. Spoofs resynthesise such signals with vocoder-like attacks, each leaving one consistent
artefact: Griffin-Lim phase incoherence, LPC pulse/noise vocoding, over-smooth quantised cepstral
envelopes, coarse mel-band smoothing, level-mismatched unit joins and an over-regular voice
without aspiration; eval adds unseen ones (phase-vocoder timing, mel + Griffin-Lim, sinusoidal
peak picking) and, as in ASVspoof 2019, two known ones renamed (A16 = A04, A19 = A06).
Calibration (seed 0, 300 training and 150 dev utterances): a linear probe on log-mel statistics reaches about 15% dev
EER with every train attack at 15-20%, while eval (unseen attacks, new speakers) stays near 30%
and the In-the-Wild set near 45%; that generalisation gap is what the corpus is for. Both classes then share the same recording conditions (level, tilt,
noise floor) so those carry no label information. Filtering is done per STFT frame (complex
all-pole responses), batched with torch.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from dpda._torchaudio import torchaudio  # one-line error if torch and torchaudio cannot load together
import torchaudio.functional as AF

from dpda.console import track
from dpda.data.synth_config import SynthConfig
from dpda.errors import UserError

SR = 16_000
N_FFT = 512
HOP = 128  # control trajectories live on the STFT frame grid (8 ms)
BINS = N_FFT // 2 + 1

# (F1, F2, F3) Hz of adult vowels; scaled per speaker (shorter vocal tract -> higher formants).
_VOWELS = torch.tensor(
    [
        [270, 2290, 3010], [390, 1990, 2550], [530, 1840, 2480], [660, 1720, 2410], [730, 1090, 2440],
        [570, 840, 2410], [440, 1020, 2240], [300, 870, 2240], [640, 1190, 2390], [490, 1350, 1690],
    ],
    dtype=torch.float32,
)
_HIGHER_FORMANTS = torch.tensor([3400.0, 4400.0])
_BANDWIDTHS = torch.tensor([80.0, 100.0, 140.0, 220.0, 280.0])

ATTACKS: dict[str, str] = {
    "A01": "Griffin-Lim (2-5 iterations) phase reconstruction of a contrast-sharpened STFT magnitude",
    "A02": "LPC vocoder: pulse train / noise excitation through frame-wise all-pole envelopes",
    "A03": "cepstral envelope smoothing, coarse quantisation and frame-rate hold (fine structure kept)",
    "A04": "mel-band (24) magnitude smoothing, original phase",
    "A05": "unit concatenation: short units of two renditions, 2 ms cross-fades, unmatched levels",
    "A06": "over-regular re-rendering: no jitter, shimmer or aspiration, smoothed pitch",
    "A07": "phase-vocoder time stretch (rate 0.85-1.15)",
    "A08": "mel-band (80) smoothing followed by Griffin-Lim",
    "A09": "sinusoidal model: spectral peaks only, no noise component",
    "A16": "same algorithm as A04",
    "A19": "same algorithm as A06",
}
TRAIN_ATTACKS: tuple[str, ...] = ("A01", "A02", "A03", "A04", "A05", "A06")
EVAL_ATTACKS: tuple[str, ...] = ("A07", "A08", "A09", "A16", "A19")
ITW_ATTACKS: tuple[str, ...] = ("A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A09")
_SPLITS = {"train": ("T", "train.trn"), "dev": ("D", "dev.trl"), "eval": ("E", "eval.trl")}


# --------------------------------------------------------------------------------------------
# Small batched helpers


def _u(gen: torch.Generator, shape, lo, hi) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen)


def _n(gen: torch.Generator, shape) -> torch.Tensor:
    return torch.randn(shape, generator=gen)


def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


def _stft(x: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, N_FFT, HOP, window=_window(), return_complex=True)


def _istft(spec: torch.Tensor, length: int) -> torch.Tensor:
    return torch.istft(spec, N_FFT, HOP, window=_window(), length=length)


def _frames(length: int) -> int:
    return length // HOP + 1  # matches torch.stft(center=True)


def _to_samples(x: torch.Tensor, length: int) -> torch.Tensor:
    """Frame-rate (B, F) trajectory -> sample rate (B, length), linear between frame centres."""
    nf = x.shape[-1]
    up = F.interpolate(x[:, None], size=(nf - 1) * HOP + 1, mode="linear", align_corners=True)[:, 0]
    if up.shape[-1] < length:  # samples after the last frame centre hold its value
        up = F.pad(up[:, None], (0, length - up.shape[-1]), mode="replicate")[:, 0]
    return up[:, :length]


def _smooth(x: torch.Tensor, width: int) -> torch.Tensor:
    """Hann-window moving average along the last axis (coarticulation, slow drifts)."""
    if width <= 1:
        return x
    k = torch.hann_window(width + 2)[1:-1]
    k = (k / k.sum()).to(x.dtype)
    pad = width // 2
    y = F.conv1d(F.pad(x[:, None], (pad, width - 1 - pad), mode="replicate"), k.view(1, 1, -1))
    return y[:, 0]


def _valid_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    return torch.arange(total)[None, :] < lengths[:, None]


def _rms(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((x * mask).pow(2).sum(-1) / mask.sum(-1).clamp_min(1)).sqrt().clamp_min(1e-8)


# --------------------------------------------------------------------------------------------
# Speakers and utterance control parameters


def draw_speakers(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Per-speaker voice: pitch, vocal-tract scale, voice quality, speaking rate."""
    female = torch.rand(n, generator=gen) < 0.5
    f0 = torch.where(female, _u(gen, n, 165.0, 255.0), _u(gen, n, 85.0, 150.0))
    vt = torch.where(female, _u(gen, n, 1.08, 1.25), _u(gen, n, 0.9, 1.05))
    return {
        "female": female,
        "f0": f0,
        "vt": vt,
        # Every natural voice keeps some jitter, shimmer and aspiration: the over-regular A06/A19
        # voice (none of them) must not overlap the quietest bona fide voices.
        "jitter": _u(gen, n, 0.008, 0.025),
        "shimmer": _u(gen, n, 0.05, 0.15),
        "breath": _u(gen, n, 0.1, 0.3),
        "oq": _u(gen, n, 0.4, 0.75),
        "rate": _u(gen, n, 3.2, 6.0),
        "bw": _u(gen, n, 0.8, 1.5),
        "prange": _u(gen, n, 1.5, 4.5),
    }


def draw_utterances(
    spk: dict[str, torch.Tensor], who: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Frame-rate control trajectories for a batch: f0, envelopes, formants, per-period noise."""
    b = who.shape[0]
    total = int(lengths.max())
    nf = _frames(total)
    t = torch.arange(nf, dtype=torch.float32)[None, :] * HOP / SR  # (1, F) seconds
    dur = lengths.float() / SR
    lead = _u(gen, b, 0.05, 0.3)
    tail = _u(gen, b, 0.05, 0.3)
    speech_end = (dur - tail).clamp_min(lead + 0.2)
    rate = spk["rate"][who] * _u(gen, b, 0.85, 1.15)

    # Syllables: lognormal durations, each a vowel target, maybe a pause or a fricative onset.
    k = int(math.ceil(float(dur.max()) * 6.0 * 1.15 * 2)) + 2
    sdur = (1.0 / rate)[:, None] * torch.exp(0.3 * _n(gen, (b, k)))
    bounds = lead[:, None] + torch.cumsum(sdur, dim=1)  # syllable end times
    starts = bounds - sdur
    ts = t.expand(b, nf).contiguous()
    idx = torch.searchsorted(bounds, ts).clamp(max=k - 1)
    u = ((ts - starts.gather(1, idx)) / sdur.gather(1, idx)).clamp(0, 1)
    pause = (torch.rand((b, k), generator=gen) < 0.12).float()
    stress = torch.exp(0.3 * _n(gen, (b, k))) * (1 - pause)
    fric = (torch.rand((b, k), generator=gen) < 0.4).float() * (1 - pause)
    fric_len = _u(gen, (b, k), 0.15, 0.35)
    fric_amp = _u(gen, (b, k), 0.05, 0.35)
    fric_centre = _u(gen, (b, k), 2500.0, 7000.0)
    vowel = torch.randint(0, _VOWELS.shape[0], (b, k), generator=gen)
    accent = _u(gen, (b, k), -1.0, 1.0)

    g = lambda v: v.gather(1, idx)  # noqa: E731  (per-frame value of the current syllable)
    onset = torch.where(g(fric) > 0, g(fric_len), torch.full_like(u, 0.04))
    rise = ((u - onset) / 0.15).clamp(0, 1)
    fall = ((1 - u) / 0.25).clamp(0, 1)
    inside = ((ts >= lead[:, None]) & (ts <= speech_end[:, None])).float()
    voiced = g(stress) * torch.sin(0.5 * math.pi * rise) ** 2 * torch.sin(0.5 * math.pi * fall) ** 2 * inside
    voiced = _smooth(voiced, 3)
    fr = (u / g(fric_len)).clamp(0, 1)
    fric_env = g(fric) * g(fric_amp) * g(stress) * torch.sin(math.pi * fr) ** 2 * (u < g(fric_len)).float() * inside

    # Pitch: declination + smoothed syllable accents + slow drift, in semitones around the mean.
    rel = ((ts - lead[:, None]) / (speech_end - lead)[:, None]).clamp(0, 1)
    prange = spk["prange"][who][:, None]
    semis = prange * (0.5 - rel) * _u(gen, (b, 1), 0.5, 1.5)
    semis = semis + _smooth(g(accent) * prange * 0.6, 15) + _smooth(_n(gen, (b, nf)), 41) * prange * 1.5
    f0 = spk["f0"][who][:, None] * _u(gen, (b, 1), 0.92, 1.08) * torch.pow(2.0, semis / 12.0)

    # Formants: vowel targets, coarticulated (smoothed), F1 lowered at consonantal onsets.
    scale = (spk["vt"][who] * _u(gen, b, 0.97, 1.03))[:, None, None]
    targets = _VOWELS[g(vowel)].permute(0, 2, 1)  # (B, 3, F)
    low = torch.stack([_smooth(targets[:, i], 9) for i in range(3)], dim=1)
    low = low * (1 + 0.04 * torch.stack([_smooth(_n(gen, (b, nf)), 25) for _ in range(3)], dim=1))
    low[:, 0] = low[:, 0] * (1 - 0.35 * (1 - rise))
    high = _HIGHER_FORMANTS[None, :, None].expand(b, 2, nf) * _u(gen, (b, 2, 1), 0.95, 1.05)
    formants = (torch.cat([low, high], dim=1) * scale).clamp(150, 7400)
    bws = _BANDWIDTHS[None, :, None] * spk["bw"][who][:, None, None] * _u(gen, (b, 5, 1), 0.8, 1.25)
    periods = int(float(dur.max()) * 600) + 8
    return {
        "lengths": lengths,
        "f0": f0,
        "voiced": voiced,
        "fric_env": fric_env,
        "fric_centre": g(fric_centre),
        "formants": formants,
        "bandwidths": bws.expand(b, 5, nf),
        "jitter": spk["jitter"][who],
        "shimmer": spk["shimmer"][who],
        "breath": spk["breath"][who],
        "oq": spk["oq"][who],
        "period_noise": _n(gen, (b, periods)),
        "amp_noise": _n(gen, (b, periods)),
    }


# --------------------------------------------------------------------------------------------
# Rendering


def _formant_response(formants: torch.Tensor, bandwidths: torch.Tensor) -> torch.Tensor:
    """Complex response (B, BINS, F) of the cascade of unit-DC-gain two-pole resonators.

    Accumulated as log-magnitude and phase in real arithmetic (several times faster than
    multiplying complex tensors); each denominator is 1 - c e^{-jw} + r^2 e^{-2jw}.
    """
    omega = torch.linspace(0, math.pi, BINS)[None, :, None]
    cos1, sin1, cos2, sin2 = omega.cos(), omega.sin(), (2 * omega).cos(), (2 * omega).sin()
    logmag = torch.zeros(formants.shape[0], BINS, formants.shape[-1])
    phase = torch.zeros_like(logmag)
    for k in range(formants.shape[1]):
        fk, bk = formants[:, k], bandwidths[:, k]
        if bool((fk == fk[:, :1]).all() and (bk == bk[:, :1]).all()):
            fk, bk = fk[:, :1], bk[:, :1]  # static resonance (F4, F5): one column, broadcast
        r = torch.exp(-math.pi * bk / SR)[:, None, :]
        c = 2 * r * torch.cos(2 * math.pi * fk / SR)[:, None, :]
        r2 = r * r
        re = 1 - c * cos1 + r2 * cos2
        im = c * sin1 - r2 * sin2
        logmag += torch.log(1 - c + r2) - 0.5 * torch.log(re * re + im * im)
        phase -= torch.atan2(im, re)
    return torch.polar(torch.exp(logmag), phase)


def _fricative_shape(centre: torch.Tensor) -> torch.Tensor:
    """(B, BINS, F) Gaussian band around the per-frame fricative centre frequency."""
    freqs = torch.linspace(0, SR / 2, BINS)[None, :, None]
    c = centre[:, None, :]
    return torch.exp(-0.5 * ((freqs - c) / (0.3 * c)) ** 2) + 0.15 * (freqs > 0.6 * c).float()


def _glottal_flow(frac: torch.Tensor, oq: torch.Tensor) -> torch.Tensor:
    """Rosenberg-style flow pulse over one period: cosine rise, quarter-cosine fall, closed."""
    tr, tf = 0.6 * oq[:, None], 0.4 * oq[:, None]
    rise = 0.5 * (1 - torch.cos(math.pi * frac / tr))
    fall = torch.cos(0.5 * math.pi * (frac - tr) / tf)
    return torch.where(frac < tr, rise, torch.where(frac < tr + tf, fall, torch.zeros_like(frac)))


def render(p: dict[str, torch.Tensor], gen: torch.Generator, natural: bool = True) -> torch.Tensor:
    """Waveforms (B, max length) from control parameters; `natural=False` drops jitter, shimmer,
    aspiration and micro-prosody (the over-regular voice of attack A06)."""
    lengths = p["lengths"]
    total = int(lengths.max())
    f0_frames = p["f0"] if natural else _smooth(p["f0"], 25)
    f0 = _to_samples(f0_frames, total).double()
    phase0 = torch.cumsum(f0 / SR, dim=1)
    last = p["period_noise"].shape[1] - 1
    if natural:
        jit = p["period_noise"].gather(1, phase0.long().clamp(max=last)).double()
        f0 = f0 * (1 + p["jitter"][:, None].double() * jit)
        phase = torch.cumsum(f0 / SR, dim=1)
    else:
        phase = phase0
    period = phase.long().clamp(max=last)
    frac = (phase - torch.floor(phase)).float()
    flow = _glottal_flow(frac, p["oq"])
    dflow = torch.diff(flow, dim=1, prepend=flow[:, :1])
    voiced = _to_samples(p["voiced"], total)
    amp = 1 + p["shimmer"][:, None] * p["amp_noise"].gather(1, period) if natural else 1.0
    source = dflow * amp * voiced
    if natural:
        level = _rms(dflow, voiced > 0.05).clamp_min(1e-4)[:, None]
        source = source + p["breath"][:, None] * level * 3 * _n(gen, source.shape) * flow * voiced
    # Formant trajectories move over tens of ms: the response is computed every other frame.
    nf = p["formants"].shape[-1]
    resp = _formant_response(p["formants"][..., ::2], p["bandwidths"][..., ::2])
    spec = _stft(source) * resp.repeat_interleave(2, dim=-1)[..., :nf]
    noise = _stft(_n(gen, source.shape) * _rms(source, voiced > 0.05)[:, None])
    spec = spec + noise * _fricative_shape(p["fric_centre"]) * p["fric_env"][:, None, :]
    wave = _istft(spec, total)
    return _normalise(wave, lengths)


def _normalise(wave: torch.Tensor, lengths: torch.Tensor, rms: float = 0.05) -> torch.Tensor:
    mask = _valid_mask(lengths, wave.shape[-1])
    return wave * mask * (rms / _rms(wave, mask))[:, None]


# --------------------------------------------------------------------------------------------
# Attacks (each maps clean renditions to spoofed waveforms, same batch shape)


def _griffin_lim(mag: torch.Tensor, length: int, n_iter: int) -> torch.Tensor:
    gl = torchaudio.transforms.GriffinLim(
        n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, power=1.0, n_iter=n_iter, momentum=0.99,
        length=length, rand_init=False,
    )
    return gl(mag)


def _mel_smooth(spec: torch.Tensor, bands: int = 80) -> torch.Tensor:
    """Magnitude after `bands`-band mel analysis and least-squares re-expansion to linear bins."""
    fb = AF.melscale_fbanks(BINS, 0.0, SR / 2, bands, SR, norm="slaney", mel_scale="slaney")  # (BINS, bands)
    mel = torch.einsum("bft,fm->bmt", spec.abs() ** 2, fb)
    back = torch.einsum("bmt,fm->bft", mel, torch.linalg.pinv(fb).T)
    return back.clamp_min(0).sqrt()


def _lpc_envelope(spec: torch.Tensor, order: int = 18) -> torch.Tensor:
    """Complex all-pole response G/A(e^jw) per frame, Levinson-Durbin on the frame autocorrelation."""
    r = torch.fft.irfft(spec.abs() ** 2, n=N_FFT, dim=1)[:, : order + 1].permute(0, 2, 1)  # (B, F, p+1)
    r[..., 0] = r[..., 0] * (1 + 1e-6) + 1e-9  # white-noise correction keeps the recursion stable
    a = torch.zeros(*r.shape[:2], order + 1)
    a[..., 0] = 1
    err = r[..., 0].clone()
    for i in range(1, order + 1):
        acc = (a[..., :i] * r[..., 1 : i + 1].flip(-1)).sum(-1)
        k = -acc / err
        a_new = a.clone()
        a_new[..., 1 : i + 1] = a[..., 1 : i + 1] + k[..., None] * a[..., :i].flip(-1)
        a = a_new
        err = err * (1 - k * k)
    resp = torch.fft.rfft(a, n=N_FFT, dim=-1)  # (B, F, BINS)
    gain = (err.clamp_min(1e-12) / _window().pow(2).sum()).sqrt()
    return (gain[..., None] / resp).permute(0, 2, 1)


def attack_griffin_lim(clean, p, gen, n_iter: int | None = None):
    """Few Griffin-Lim iterations (phase incoherence) on a magnitude raised to a power > 1, the
    contrast sharpening GL-based TTS applies to hide its own artefacts (over-peaky harmonics)."""
    n_iter = n_iter or int(torch.randint(2, 6, (1,), generator=gen))
    power = float(_u(gen, 1, 1.2, 1.5))
    return _griffin_lim(_stft(clean).abs() ** power, clean.shape[-1], n_iter)


def attack_lpc(clean, p, gen):
    total = clean.shape[-1]
    f0 = _to_samples(_smooth(p["f0"], 9), total).double()
    phase = torch.cumsum(f0 / SR, dim=1)
    pulses = torch.diff(torch.floor(phase), dim=1, prepend=torch.zeros_like(phase[:, :1])).float()
    pulses = pulses * (SR / f0.float()).sqrt()
    v = _to_samples(p["voiced"], total)
    v = (v / v.amax(dim=1, keepdim=True).clamp_min(1e-6)).clamp(0, 1) ** 0.5
    excitation = v * pulses + (1 - v + 0.05) * _n(gen, clean.shape)
    spec = _stft(excitation) * _lpc_envelope(_stft(clean))
    return _istft(spec, total)


def attack_cepstral(clean, p, gen):
    spec = _stft(clean)
    logmag = torch.log(spec.abs() + 1e-7)
    cep = torch.fft.irfft(logmag, n=N_FFT, dim=1)
    lifter = torch.zeros(N_FFT)
    lifter[:16] = 1
    lifter[-15:] = 1
    env = torch.fft.rfft(cep * lifter[None, :, None], dim=1).real
    fine = logmag - env
    step = float(_u(gen, 1, 0.3, 0.6))
    q = torch.round(cep / step) * step * lifter[None, :, None]
    q = q[..., ::3].repeat_interleave(3, dim=-1)[..., : cep.shape[-1]]  # hold every third frame
    env_q = torch.fft.rfft(q, dim=1).real
    return _istft(torch.exp(env_q + fine) * torch.exp(1j * spec.angle()), clean.shape[-1])


def attack_mel(clean, p, gen):
    spec = _stft(clean)
    # 24 bands: wider than a harmonic spacing above ~1 kHz, so the harmonics there are smeared.
    return _istft(_mel_smooth(spec, 24) * torch.exp(1j * spec.angle()), clean.shape[-1])


def attack_concat(clean, p, gen, other: torch.Tensor | None = None):
    """Splice short units of the utterance and of another rendition of the same speaker
    (`other`) with 2 ms cross-fades; each unit keeps its own level (+-5 dB), as units picked
    from a database without level matching, so joins are audible as jumps and clicks."""
    if other is None:
        other = clean.roll(1, dims=0)
    b, total = clean.shape
    m = int(total / SR / 0.08) + 2
    seg = torch.cumsum(_u(gen, (b, m), 0.08, 0.3), dim=1) * SR
    idx = torch.searchsorted(seg, torch.arange(total, dtype=torch.float32).expand(b, total).contiguous())
    unit_db = _u(gen, (b, m + 1), -5.0, 5.0).gather(1, idx)
    kernel = torch.hann_window(34)[1:-1]
    fade = lambda x: F.conv1d(x[:, None], (kernel / kernel.sum()).view(1, 1, -1), padding=16)[:, 0, :total]  # noqa: E731
    mask = fade((idx % 2).float())
    gain = fade(10 ** (unit_db / 20))
    return (clean * (1 - mask) + other[:, :total] * mask) * gain


def attack_regular(clean, p, gen):
    return render(p, gen, natural=False)


def attack_phase_vocoder(clean, p, gen):
    rate = float(_u(gen, 1, 0.8, 1.25))
    if abs(rate - 1) < 0.05:
        rate = 1.1
    spec = _stft(clean)
    advance = torch.linspace(0, math.pi * HOP, BINS)[..., None]
    stretched = AF.phase_vocoder(spec, rate, advance)
    total = clean.shape[-1]
    out = torch.istft(stretched, N_FFT, HOP, window=_window())[:, :total]
    return F.pad(out, (0, total - out.shape[-1]))  # a faster rate ends early: silence after


def attack_mel_griffin_lim(clean, p, gen):
    n_iter = int(torch.randint(8, 25, (1,), generator=gen))
    return _griffin_lim(_mel_smooth(_stft(clean)), clean.shape[-1], n_iter)


def attack_sinusoidal(clean, p, gen):
    spec = _stft(clean)
    mag = spec.abs()
    peak = (mag >= F.pad(mag, (0, 0, 1, 0))[:, :-1]) & (mag >= F.pad(mag, (0, 0, 0, 1))[:, 1:])
    floor = mag.amax(dim=1, keepdim=True) * 10 ** (-40 / 20)
    keep = peak & (mag > floor)
    keep = keep | F.pad(keep, (0, 0, 1, 0))[:, :-1] | F.pad(keep, (0, 0, 0, 1))[:, 1:]
    return _istft(spec * keep, clean.shape[-1])


_ATTACK_FNS: dict[str, Callable] = {
    "A01": attack_griffin_lim,
    "A02": attack_lpc,
    "A03": attack_cepstral,
    "A04": attack_mel,
    "A05": attack_concat,
    "A06": attack_regular,
    "A07": attack_phase_vocoder,
    "A08": attack_mel_griffin_lim,
    "A09": attack_sinusoidal,
    "A16": attack_mel,
    "A19": attack_regular,
}


# --------------------------------------------------------------------------------------------
# Recording conditions (both classes) and In-the-Wild channel effects


def _coloured_noise(gen: torch.Generator, b: int, total: int, slope: torch.Tensor) -> torch.Tensor:
    """Noise with power ~ f^slope (0 white, -1 pink, -2 brown-ish), unit RMS."""
    spec = torch.fft.rfft(_n(gen, (b, total)), dim=1)
    f = torch.linspace(0, 1, spec.shape[1]).clamp_min(1.0 / spec.shape[1])
    noise = torch.fft.irfft(spec * f[None, :] ** (slope[:, None] / 2), n=total, dim=1)
    return noise / noise.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-8)


def _add_noise(wave, lengths, gen, snr_lo, snr_hi):
    b, total = wave.shape
    mask = _valid_mask(lengths, total)
    snr = _u(gen, b, snr_lo, snr_hi)
    noise = _coloured_noise(gen, b, total, _u(gen, b, -1.5, 0.0))
    scale = _rms(wave, mask) / 10 ** (snr / 20)
    return (wave + noise * scale[:, None]) * mask


def recording(wave: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Studio-like conditions shared by both classes: tilt, noise floor, level."""
    b = wave.shape[0]
    a = _u(gen, (b, 1), -0.4, 0.5)
    wave = wave - a * F.pad(wave, (1, 0))[:, :-1]
    wave = _add_noise(wave, lengths, gen, 30.0, 60.0)
    return _to_level(wave, lengths, gen)


def _to_level(wave, lengths, gen):
    mask = _valid_mask(lengths, wave.shape[-1])
    peak = (wave.abs() * mask).amax(dim=1).clamp_min(1e-8)
    target = _u(gen, wave.shape[0], 0.25, 0.9)
    return wave * (target / peak)[:, None]


def channel(wave: torch.Tensor, lengths: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """In-the-Wild conditions, each effect on a random subset of the batch: reverberation,
    band-limiting, additive noise at 5-30 dB SNR, mu-law companding, clipping."""
    b, total = wave.shape
    pick = lambda prob: (torch.rand(b, generator=gen) < prob)[:, None]  # noqa: E731
    mask = _valid_mask(lengths, total)
    # Reverberation: exponentially decaying noise impulse response (RT60 0.15-0.8 s).
    rt60 = _u(gen, (b, 1), 0.15, 0.8)
    n_ir = SR // 2
    tt = torch.arange(n_ir)[None, :] / SR
    ir = _n(gen, (b, n_ir)) * torch.exp(-6.9 * tt / rt60) * 0.3
    ir[:, 0] = 1.0
    wet = AF.fftconvolve(wave, ir)[:, :total]
    wet = wet * (_rms(wave, mask) / _rms(wet, mask))[:, None]
    wave = torch.where(pick(0.5), wet, wave) * mask
    # Band-limiting (telephone to wideband) by a smooth spectral mask.
    spec = torch.fft.rfft(wave, dim=1)
    freqs = torch.linspace(0, SR / 2, spec.shape[1])[None, :]
    lo, hi = _u(gen, (b, 1), 50.0, 300.0), _u(gen, (b, 1), 3400.0, 7500.0)
    band = torch.sigmoid((freqs - lo) / 20) * torch.sigmoid((hi - freqs) / 100)
    wave = torch.where(pick(0.6), torch.fft.irfft(spec * band, n=total, dim=1), wave) * mask
    wave = torch.where(pick(0.7), _add_noise(wave, lengths, gen, 5.0, 30.0), wave)
    peak = wave.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
    mu = AF.mu_law_decoding(AF.mu_law_encoding((wave / peak).clamp(-1, 1), 256), 256) * peak
    wave = torch.where(pick(0.3), mu, wave)
    clip_at = _u(gen, (b, 1), 0.3, 0.8) * peak
    wave = torch.where(pick(0.25), torch.maximum(torch.minimum(wave, clip_at), -clip_at), wave)
    return _to_level(wave * mask, lengths, gen)


# --------------------------------------------------------------------------------------------
# Corpus assembly


@dataclass(frozen=True)
class Utterance:
    utt: str
    speaker: int
    attack: str  # "-" for bona fide
    samples: int


def _seed(*parts: int) -> int:
    state = np.random.SeedSequence([int(x) & 0xFFFFFFFF for x in parts]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def _plan(cfg: SynthConfig, n: int, prefix: str, attacks: tuple[str, ...], n_speakers: int, split_id: int) -> list[Utterance]:
    """Who says what: balanced speakers, `bonafide_fraction` bona fide, attacks equally shared."""
    rng = np.random.default_rng(_seed(cfg.seed, split_id, 1))
    n_bona = int(round(n * cfg.bonafide_fraction)) if n > 1 else n
    kinds = ["-"] * n_bona + [attacks[i % len(attacks)] for i in range(n - n_bona)]
    speakers = rng.permutation(np.arange(n) % n_speakers)
    lengths = np.round(rng.uniform(cfg.min_seconds, cfg.max_seconds, n) * SR).astype(int)
    ids = 1_000_000 + rng.choice(9_000_000, size=n, replace=False)
    return [
        Utterance(f"{prefix}{ids[i]}" if prefix else str(i), int(speakers[i]), kinds[i], int(lengths[i]))
        for i in range(n)
    ]


@dataclass(frozen=True)
class _Task:
    """One batch of utterances of one kind: everything a worker process needs."""

    speakers: dict[str, torch.Tensor]
    kind: str
    who: list[int]
    lengths: list[int]
    seed: int
    itw: bool


def _tasks(plan: list[Utterance], speakers: dict[str, torch.Tensor], seed: int, batch_size: int, itw: bool = False) -> list[tuple[list[int], _Task]]:
    """(plan rows, task) batches grouped by kind and sorted by duration (little padding)."""
    out = []
    for kind_id, kind in enumerate(sorted({u.attack for u in plan})):
        rows = sorted((i for i, u in enumerate(plan) if u.attack == kind), key=lambda i: (plan[i].samples, i))
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            task = _Task(speakers, kind, [plan[i].speaker for i in chunk], [plan[i].samples for i in chunk],
                         _seed(seed, kind_id, start, 7 if itw else 3), itw)
            out.append((chunk, task))
    return out


def synthesize_batch(task: _Task) -> list[np.ndarray]:
    """int16 waveforms of one batch; a pure function of the task (same task, same samples)."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(task.seed)
    who, lengths = torch.tensor(task.who), torch.tensor(task.lengths)
    p = draw_utterances(task.speakers, who, lengths, gen)
    clean = render(p, gen)
    if task.kind == "-":
        wave = clean
    elif task.kind == "A05":
        other = render(draw_utterances(task.speakers, who, lengths, gen), gen)
        wave = attack_concat(clean, p, gen, other=other)
    else:
        wave = _ATTACK_FNS[task.kind](clean, p, gen)
    wave = recording(_normalise(wave, lengths), lengths, gen)
    if task.itw:
        wave = channel(wave, lengths, gen)
    pcm = torch.round(wave.clamp(-1, 1) * 32767).to(torch.int16).numpy()
    return [pcm[row, :n].copy() for row, n in enumerate(task.lengths)]


def _run_tasks(tasks: list[_Task], workers: int) -> list[list[np.ndarray]]:
    """Run batches serially or in worker processes (results do not depend on which)."""
    if workers <= 1 or len(tasks) < 4:
        return list(track((synthesize_batch(t) for t in tasks), len(tasks), "synthesising", "batches"))
    ctx = multiprocessing.get_context("spawn")  # no forked OpenMP state
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(track(pool.map(synthesize_batch, tasks), len(tasks), "synthesising", "batches"))


@dataclass(frozen=True)
class SynthResult:
    root: Path
    specs: dict[str, str]
    counts: dict[str, dict[str, int]]  # split -> attack/"-" -> utterances


def single_threaded(fn):
    """Run with one torch intra-op thread: float reductions (FFT, matmul) may round differently
    with another thread split and the files must be byte-identical; and on a busy 2-core machine
    OpenMP thread contention made synthesis over 10x slower than a single thread."""

    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


def clear_output_folders(folders: Iterable[Path], overwrite: bool) -> None:
    """A generator's output folders: an existing one is an error unless `overwrite` (then it is
    removed), so a second run never mixes old and new files."""
    for folder in folders:
        if folder.exists():
            if not overwrite:
                raise UserError(f"{folder}: already exists (use --overwrite to replace it)")
            shutil.rmtree(folder)


@single_threaded
def write_synthetic_corpus(
    out_dir: str | os.PathLike, cfg: SynthConfig = SynthConfig(), overwrite: bool = False, workers: int | None = None
) -> SynthResult:
    """Write LA/ (ASVspoof 2019 LA layout), itw/ (meta.csv + <n>.wav) and README.txt.

    `workers` processes synthesise batches in parallel (default: one per core, at most 4);
    the bytes written do not depend on it.
    """
    root = Path(out_dir)
    la, itw_dir = root / "LA", root / "itw"
    clear_output_folders((la, itw_dir), overwrite)
    sizes = {"train": cfg.train, "dev": cfg.dev, "eval": cfg.eval, "itw": cfg.itw}
    n_spk = {"train": cfg.speakers_train, "dev": cfg.speakers_dev, "eval": cfg.speakers_eval, "itw": cfg.speakers_itw}
    plans: dict[str, list[Utterance]] = {}
    jobs: list[tuple[str, list[int], _Task]] = []
    for split_id, split in enumerate(sizes):
        attacks = {"eval": EVAL_ATTACKS, "itw": ITW_ATTACKS}.get(split, TRAIN_ATTACKS)
        prefix = f"LA_{_SPLITS[split][0]}_" if split in _SPLITS else ""
        plans[split] = _plan(cfg, sizes[split], prefix, attacks, n_spk[split], split_id)
        speakers = draw_speakers(n_spk[split], torch.Generator().manual_seed(_seed(cfg.seed, split_id, 2)))
        for rows, task in _tasks(plans[split], speakers, _seed(cfg.seed, split_id, 4), cfg.batch_size, itw=split == "itw"):
            jobs.append((split, rows, task))
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    results = _run_tasks([t for _, _, t in jobs], workers)
    waves: dict[str, list[np.ndarray]] = {split: [np.zeros(0, np.int16)] * len(plan) for split, plan in plans.items()}
    for (split, rows, _), pcms in zip(jobs, results):
        for i, pcm in zip(rows, pcms):
            waves[split][i] = pcm

    protocols = la / "ASVspoof2019_LA_cm_protocols"
    protocols.mkdir(parents=True, exist_ok=True)
    first_speaker = 79  # ASVspoof-like speaker ids, disjoint between splits
    for split, (letter, suffix) in _SPLITS.items():
        flac = la / f"ASVspoof2019_LA_{split}" / "flac"
        flac.mkdir(parents=True, exist_ok=True)
        lines = []
        for u, w in sorted(zip(plans[split], waves[split]), key=lambda x: (x[0].speaker, x[0].utt)):
            sf.write(flac / f"{u.utt}.flac", w, SR, subtype="PCM_16", format="FLAC")
            lines.append(f"LA_{first_speaker + u.speaker:04d} {u.utt} - {u.attack} {'bonafide' if u.attack == '-' else 'spoof'}\n")
        first_speaker += n_spk[split]
        (protocols / f"ASVspoof2019.LA.cm.{suffix}.txt").write_text("".join(lines))

    itw_dir.mkdir(parents=True, exist_ok=True)
    plan = plans["itw"]
    order = np.random.default_rng(_seed(cfg.seed, 3, 5)).permutation(len(plan))
    meta = ["file,speaker,label\n"]
    for n, i in enumerate(order):
        u = plan[i]
        sf.write(itw_dir / f"{n}.wav", waves["itw"][i], SR, subtype="PCM_16", format="WAV")
        meta.append(f"{n}.wav,speaker_{u.speaker + 1:02d},{'bona-fide' if u.attack == '-' else 'spoof'}\n")
    (itw_dir / "meta.csv").write_text("".join(meta))

    counts = {split: _count(plan) for split, plan in plans.items()}
    specs = {
        "train": f"asvspoof2019:{la}:train",
        "dev": f"asvspoof2019:{la}:dev",
        "eval": f"asvspoof2019:{la}:eval",
        "itw": f"itw:{itw_dir}",
    }
    (root / "README.txt").write_text(_readme(cfg, specs, counts))
    return SynthResult(root, specs, counts)


def _count(plan: list[Utterance]) -> dict[str, int]:
    out: dict[str, int] = {}
    for u in plan:
        out[u.attack] = out.get(u.attack, 0) + 1
    return dict(sorted(out.items()))


def _readme(cfg: SynthConfig, specs: dict[str, str], counts: dict[str, dict[str, int]]) -> str:
    lines = [
        "dpda synthetic corpus (generated by `dpda synth`; deterministic: same seed and options,",
        "same bytes)",
        "",
        "Layout",
        "  LA/ASVspoof2019_LA_{train,dev,eval}/flac/<utt>.flac   16 kHz, 16-bit",
        "  LA/ASVspoof2019_LA_cm_protocols/ASVspoof2019.LA.cm.{train.trn,dev.trl,eval.trl}.txt",
        "      one line per trial: SPEAKER UTT - ATTACK KEY (ATTACK '-' for bona fide)",
        "  itw/meta.csv (file,speaker,label with bona-fide|spoof) and itw/<n>.wav: In-the-Wild-style",
        "      set, both classes passed through reverberation, band-limiting, additive noise,",
        "      mu-law companding and clipping (each on a random subset).",
        "",
        "Bona fide: source-filter speech-like synthesis (glottal pulses with pitch contours, jitter,",
        "shimmer and aspiration; time-varying formant resonators with per-speaker vocal-tract",
        "scaling; syllable rhythm, pauses, fricative bursts). Speakers are disjoint between splits.",
        "Both classes share the same recording conditions (tilt, noise floor, level).",
        "",
        "Attacks (train/dev: A01-A06; eval: unseen A07-A09 plus A16 = A04 and A19 = A06):",
    ]
    lines += [f"  {k}  {v}" for k, v in ATTACKS.items()]
    lines += ["", "Counts (attack '-' = bona fide):"]
    for split, c in counts.items():
        lines.append(f"  {split:5s} " + "  ".join(f"{k}:{v}" for k, v in c.items()))
    lines += ["", "Corpus specs for dpda commands:"]
    lines += [f"  {k:5s} {v}" for k, v in specs.items()]
    lines += ["", "Options: " + ", ".join(f"{k}={v}" for k, v in cfg.model_dump().items()), ""]
    return "\n".join(lines)
