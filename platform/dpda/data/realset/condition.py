"""Level, silence and noise floor made alike for both classes, so none of them tells the label.

Why: the Asterisk prompts are tightly trimmed studio recordings mastered to about -3 dBFS peak with
a real noise floor; synthesizers pad 0.2-0.5 s of silence, come out at any level, and write
digital zeros between words. Each of those differences is a shortcut a detector would learn
instead of "is this synthetic?" (the ASVspoof 2019 silence-duration trap is the known example).
So every file is trimmed to its speech with the same margin and normalised to the same peak, and
audio that never had a noise floor (synthesizer output, the probe recordings) gets a faint
white one before its G.722 round trip.
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.02
ACTIVITY_DB = -40.0  # a frame is speech when its energy is within this of the loudest frame
MARGIN_S = 0.02  # kept before the first and after the last speech frame
PEAK_DBFS = -3.0
NOISE_FLOOR_DBFS = -70.0  # RMS of the added floor; Asterisk's quietest frames sit at -45 to -80 dB


def trim(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """`wave` from its first to its last speech frame, plus MARGIN_S each side where available."""
    frame = int(FRAME_S * sample_rate)
    n = len(wave) // frame
    if n == 0:
        return wave
    energy = (wave[: n * frame].astype(np.float64).reshape(n, frame) ** 2).mean(axis=1)
    active = np.flatnonzero(10 * np.log10(energy + 1e-20) >= 10 * np.log10(energy.max() + 1e-20) + ACTIVITY_DB)
    if active.size == 0:
        return wave
    margin = int(MARGIN_S * sample_rate)
    start = max(0, active[0] * frame - margin)
    stop = min(len(wave), (active[-1] + 1) * frame + margin)
    return wave[start:stop]


def normalise_peak(wave: np.ndarray) -> np.ndarray:
    """Scaled so that its peak is PEAK_DBFS."""
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak == 0.0:
        return wave.astype(np.float32)
    return (wave * (10 ** (PEAK_DBFS / 20) / peak)).astype(np.float32)


def add_noise_floor(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`wave` plus white Gaussian noise of NOISE_FLOOR_DBFS RMS (deterministic given `rng`)."""
    noise = rng.standard_normal(len(wave)) * 10 ** (NOISE_FLOOR_DBFS / 20)
    return (wave + noise).astype(np.float32)


def high_band_db(wave: np.ndarray, sample_rate: int, cutoff_hz: float = 4000.0) -> float:
    """Share of the energy above `cutoff_hz`, in dB (Hann-windowed 512-point frames, averaged):
    the spectral statistic that differs most between coded and uncoded audio."""
    n_fft = 512
    x = np.asarray(wave, dtype=np.float64)
    if len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    starts = np.arange(0, len(x) - n_fft + 1, n_fft // 2)
    frames = np.stack([x[s : s + n_fft] for s in starts]) * np.hanning(n_fft)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    return float(10 * np.log10(power[freqs >= cutoff_hz].sum() / max(power.sum(), 1e-30) + 1e-30))
