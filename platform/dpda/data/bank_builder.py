"""Small offline noise and RIR banks in the MUSAN and RIRS_NOISES layouts (`dpda banks OUT_DIR`).

Why: the noise and reverb augmentations, their tests and the demo must run without downloading
MUSAN (11 GB) or RIRS_NOISES (1.2 GB). Everything is generated from a seed (numpy's PCG64 and
torch's CPU generator), so the same seed and sizes give the same bytes.

- `musan/noise/synthetic/`: coloured noise (spectral slope 0-2: white to brown) with a slow
  random amplitude modulation.
- `musan/music/synthetic/`: melodies of harmonic notes (6 partials, 1/k amplitudes, plucked
  decay) over a held chord.
- `musan/speech/synthetic/`: the source-filter speech of `dpda synth` (`dpda.data.synth`), one
  speaker per file: what babble sums.
- `RIRS_NOISES/simulated_rirs/{smallroom,mediumroom,largeroom}/RoomNNN/RoomNNN-NNNNN.wav` with
  Kaldi's `rir_list` per size: the stochastic (Polack) model, h(t) = d(t - t0) + b(t) e^{-3 ln(10) t / RT60}
  for t past the first reflection, b white Gaussian; per room an RT60 drawn from the size's range,
  per RIR a source distance (the direct path's delay t0 = r / 343 m/s, at 1.0) and a
  direct-to-reverberant ratio that sets the tail's energy. Length: t0 + RT60 (the tail's -60 dB).
  It has no early-reflection geometry (an image-source simulator would), which a detector's
  augmentation does not need; it needs no dependency.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.io import wavfile

from dpda import SAMPLE_RATE
from dpda.data.bank_config import BankSizes
from dpda.data.synth import clear_output_folders, draw_speakers, draw_utterances, render, single_threaded

SPEED_OF_SOUND = 343.0  # m/s
ROOMS: dict[str, dict[str, tuple[float, float]]] = {  # per size: RT60 (s), source distance (m)
    "smallroom": {"rt60": (0.2, 0.5), "distance": (0.5, 2.0)},
    "mediumroom": {"rt60": (0.4, 0.8), "distance": (1.0, 4.0)},
    "largeroom": {"rt60": (0.7, 1.2), "distance": (2.0, 8.0)},
}
DRR_DB = (-2.0, 10.0)  # direct-to-reverberant energy ratio drawn per RIR
FIRST_REFLECTION_MS = (1.0, 8.0)  # gap between the direct path and the tail


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, stream])


def _lengths(rng: np.random.Generator, n: int, sizes: BankSizes) -> np.ndarray:
    return np.round(rng.uniform(sizes.min_seconds, sizes.max_seconds, n) * SAMPLE_RATE).astype(int)


def _at_level(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x scaled to an RMS of -30 to -15 dBFS, peak kept below full scale."""
    x = x * (10 ** (rng.uniform(-30, -15) / 20) / max(float(np.sqrt(np.mean(x**2))), 1e-12))
    peak = float(np.abs(x).max())
    return (x * (0.99 / peak) if peak > 0.99 else x).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with power spectrum ~ f^-slope (slope drawn in [0, 2]) and a slow level wobble."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spec *= np.maximum(f, 20.0) ** (-rng.uniform(0, 2) / 2)
    x = np.fft.irfft(spec, n)
    t = np.arange(n) / SAMPLE_RATE
    return _at_level(x * (1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t + rng.uniform(0, 2 * np.pi))), rng)


def _note(f0: float, n: int, decay: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    partials = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 7) if k * f0 < SAMPLE_RATE / 2)
    return partials * np.exp(-t / decay) * np.minimum(1.0, t / 0.005)


def music(rng: np.random.Generator, n: int) -> np.ndarray:
    """A melody of plucked harmonic notes (MIDI 55-84) over a held three-note chord."""
    root = int(rng.integers(43, 55))
    x = sum(0.3 * _note(440 * 2 ** ((root + s - 69) / 12), n, 4.0) for s in (0, 4, 7))
    start = 0
    while start < n:
        dur = int(rng.uniform(0.12, 0.6) * SAMPLE_RATE)
        f0 = 440 * 2 ** ((int(rng.integers(55, 85)) - 69) / 12)
        m = min(dur + SAMPLE_RATE // 2, n - start)
        x[start:start + m] += _note(f0, m, rng.uniform(0.1, 0.5))
        start += dur
    return _at_level(x, rng)


def speech(seed: int, lengths: np.ndarray) -> list[np.ndarray]:
    """`dpda synth`'s bona fide speech, one speaker per file."""
    if not len(lengths):
        return []
    gen = torch.Generator().manual_seed(seed)
    n = len(lengths)
    spk = draw_speakers(n, gen)
    p = draw_utterances(spk, torch.arange(n), torch.as_tensor(lengths), gen)
    waves = render(p, gen).numpy()
    rng = _rng(seed, 3)
    return [_at_level(waves[i, :k].astype(np.float64), rng) for i, k in enumerate(lengths)]


def simulated_rir(rng: np.random.Generator, rt60: float, distance: float) -> np.ndarray:
    """One RIR of the stochastic model (module docstring), direct path at 1.0."""
    delay = int(round(distance / SPEED_OF_SOUND * SAMPLE_RATE))
    gap = int(round(rng.uniform(*FIRST_REFLECTION_MS) * SAMPLE_RATE / 1000))
    n = delay + int(math.ceil(rt60 * SAMPLE_RATE))
    h = np.zeros(n)
    h[delay] = 1.0
    t = np.arange(n - delay - gap) / SAMPLE_RATE
    tail = rng.standard_normal(len(t)) * np.exp(-3 * math.log(10) * (t + gap / SAMPLE_RATE) / rt60)
    drr = rng.uniform(*DRR_DB)
    h[delay + gap:] = tail * math.sqrt(1.0 / (float(np.sum(tail**2)) * 10 ** (drr / 10)))
    return h.astype(np.float32)


@single_threaded
def write_banks(out_dir: str | Path, sizes: BankSizes = BankSizes(), overwrite: bool = False) -> dict[str, str]:
    """Write `OUT/musan`, `OUT/RIRS_NOISES` and `OUT/README.txt`; return the bank specs."""
    root = Path(out_dir)
    musan, rirs = root / "musan", root / "RIRS_NOISES"
    clear_output_folders((musan, rirs), overwrite)
    rng = _rng(sizes.seed, 1)
    for category, count, make in (("noise", sizes.noise, coloured_noise), ("music", sizes.music, music)):
        for i, n in enumerate(_lengths(rng, count, sizes)):
            _write(musan / category / "synthetic" / f"{category}-synthetic-{i:04d}.wav", make(rng, int(n)), "PCM_16")
    talk = speech(sizes.seed, _lengths(_rng(sizes.seed, 2), sizes.speech, sizes))
    for i, wave in enumerate(talk):
        _write(musan / "speech" / "synthetic" / f"speech-synthetic-{i:04d}.wav", wave, "PCM_16")
    rng = _rng(sizes.seed, 4)
    for size, ranges in ROOMS.items():
        lines = []
        for r in range(1, sizes.rooms + 1):
            rt60 = rng.uniform(*ranges["rt60"])
            for k in range(1, sizes.rirs_per_room + 1):
                rel = f"RIRS_NOISES/simulated_rirs/{size}/Room{r:03d}/Room{r:03d}-{k:05d}.wav"
                _write(root / rel, simulated_rir(rng, rt60, rng.uniform(*ranges["distance"])), "FLOAT")
                lines.append(f"--rir-id {size}-Room{r:03d}-{k:05d} --room-id {size}-Room{r:03d} {rel}\n")
        if lines:
            (rirs / "simulated_rirs" / size).mkdir(parents=True, exist_ok=True)
            (rirs / "simulated_rirs" / size / "rir_list").write_text("".join(lines))
    specs = {"noise": f"musan:{musan}", "rirs": f"rirs:{rirs}"}
    (root / "README.txt").write_text(_readme(sizes, specs))
    return specs


def _write(path: Path, wave: np.ndarray, subtype: str) -> None:
    """16-bit PCM through libsndfile; 32-bit float through scipy, whose WAV has no PEAK chunk
    (libsndfile's carries a timestamp: the same RIR would not be the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if subtype == "FLOAT":
        wavfile.write(path, SAMPLE_RATE, wave.astype(np.float32))
    else:
        sf.write(path, wave, SAMPLE_RATE, subtype=subtype)


def _readme(sizes: BankSizes, specs: dict[str, str]) -> str:
    doc = (__doc__ or "").split("\n\n", 1)[1].strip()
    lines = ["dpda offline augmentation banks (written by `dpda banks`; same seed and sizes, same bytes)",
             "", doc, "", "All files 16 kHz mono: noise, music and speech 16-bit PCM, RIRs 32-bit float.",
             "", "Bank specs for dpda (dpda check, the noise and reverb augmentations):"]
    lines += [f"  {k:6s} {v}" for k, v in specs.items()]
    lines += ["", "Options: " + ", ".join(f"{k}={v}" for k, v in asdict(sizes).items()), ""]
    return "\n".join(lines)
