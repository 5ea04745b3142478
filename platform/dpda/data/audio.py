"""Audio I/O and fixed-length framing of waveforms.

Models take fixed-length 16 kHz mono float32 input (published length 66,800 samples, about
4.2 s). Every corpus is read through `load_audio`, so bit depth, channel count and sample rate
differences are removed in one place.
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import torch
from dpda._torchaudio import torchaudio  # noqa: F401  one-line error if torch and torchaudio cannot load together
import torchaudio.functional as AF

from dpda import SAMPLE_RATE
from dpda.data.audio_file import not_regular, rate_problem
from dpda.errors import UserError

DEFAULT_LENGTH = 66_800  # samples; the published crop / repeat-pad length


class AudioReadError(UserError):
    """An audio file that cannot be used: unreadable, empty, or with NaN/Inf samples."""


def read_audio(path: str | os.PathLike, max_samples: int | None = None,
               sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """(float32 array (frames, channels), sample rate) decoded by libsndfile, any bit depth.

    `max_samples`: only the frames the first `max_samples` samples at `sample_rate` need
    (`window_frames`), whatever the file's length; None: the whole file.
    Raises AudioReadError for unreadable, zero-length or non-finite audio (in what was read),
    for a path that is not a regular file (never opened: a FIFO would block) and for a sample
    rate outside `SAMPLE_RATE_RANGE` (checked before decoding), so callers handle one exception type.
    """
    try:
        special = not_regular(path)
        if special is not None:
            raise AudioReadError(f"{path}: {special}, not a regular file")
        with sf.SoundFile(os.fspath(path)) as fh:
            bad_rate = rate_problem(fh.samplerate)
            if bad_rate is not None:
                raise AudioReadError(f"{path}: {bad_rate}")
            rate = fh.samplerate
            frames = -1 if max_samples is None else window_frames(max_samples, sample_rate, rate)
            data = fh.read(frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise AudioReadError(f"{path}: cannot read audio ({exc})") from None
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioReadError(f"{path}: zero-length audio")
    if not np.isfinite(data).all():
        raise AudioReadError(f"{path}: audio contains NaN or Inf samples")
    return data, int(rate)


def window_frames(samples: int, sample_rate: int, file_rate: int) -> int:
    """Frames at `file_rate` to read so that the first `samples` samples resampled to
    `sample_rate` are exactly those of the whole file: the window's own frames plus 2 s.

    Why the margin: resampled sample i depends on the input up to the sinc filter's reach past
    it, at most one block of file_rate/gcd frames (1 s) plus the filter's width (6 zero crossings,
    under 1 ms); tests/test_data_audio.py checks equality at common and odd rates."""
    return -(-samples * file_rate // sample_rate) + 2 * file_rate


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               max_samples: int | None = None) -> torch.Tensor:
    """Mono float32 waveform `(time,)` at `sample_rate` (channels averaged, resampled if needed).

    `max_samples` (scoring: the window from the file's start): decode only what the first
    `max_samples` output samples need, so memory is bounded for any file length; the result
    then holds at least those samples (all of a shorter file), equal to the whole file's."""
    data, rate = read_audio(path, max_samples, sample_rate)
    wave = torch.from_numpy(data).mean(dim=1)
    if rate != sample_rate:
        wave = AF.resample(wave, orig_freq=rate, new_freq=sample_rate)
    return wave.contiguous()


def fix_length(wave: torch.Tensor, length: int = DEFAULT_LENGTH, offset: int = 0) -> torch.Tensor:
    """Crop `length` samples starting at `offset`, or repeat the whole signal until it fills
    `length` (repeat-padding keeps the content speech-like, unlike zero padding).

    Acts on the last dimension; `offset` is clamped to the valid range and ignored when padding.
    """
    if length <= 0:
        raise ValueError(f"length must be > 0, got {length}")
    n = wave.shape[-1]
    if n == 0:
        raise ValueError("cannot fix the length of an empty waveform")
    if n >= length:
        start = min(max(int(offset), 0), n - length)
        return wave[..., start : start + length]
    reps = -(-length // n)
    return wave.repeat(*([1] * (wave.dim() - 1)), reps)[..., :length]


def crop_offset(num_samples: int, length: int, generator: torch.Generator | None) -> int:
    """Start of a crop: uniform over valid offsets with a generator (training), else 0 (eval)."""
    span = num_samples - length
    if span <= 0 or generator is None:
        return 0
    return int(torch.randint(0, span + 1, (1,), generator=generator).item())
