"""Audio loading (bit depths, formats, channels, resampling) and fixed-length framing."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from dpda.data.audio import AudioReadError, crop_offset, fix_length, load_audio


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def _peak_hz(wave: torch.Tensor, rate: int = 16000) -> float:
    spec = torch.fft.rfft(wave.double() * torch.hann_window(wave.numel(), dtype=torch.float64))
    return float(spec.abs().argmax()) * rate / wave.numel()


@pytest.mark.parametrize(
    "fmt,subtype,tol",
    [("WAV", "PCM_16", 1 / 32768), ("WAV", "PCM_24", 1 / 2**23), ("WAV", "FLOAT", 1e-7), ("FLAC", "PCM_16", 1 / 32768), ("FLAC", "PCM_24", 1 / 2**23)],
)
def test_round_trip_any_bit_depth(tmp_path, fmt, subtype, tol):
    x = _sine(440, 16000, 0.5)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, 16000, subtype=subtype, format=fmt)
    w = load_audio(path)
    assert w.dtype == torch.float32 and w.shape == (8000,)
    assert np.max(np.abs(w.numpy() - x)) <= tol * 1.01 + 1e-7


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _sine(300, 16000, 0.25), _sine(700, 16000, 0.25, amp=0.25)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    w = load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(w.numpy(), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 44100])
def test_resampling_keeps_duration_and_frequency(tmp_path, rate):
    sf.write(tmp_path / "r.wav", _sine(1000, rate, 1.0), rate, subtype="PCM_16")
    w = load_audio(tmp_path / "r.wav")
    assert w.shape == (16000,)
    assert abs(_peak_hz(w) - 1000) <= 2


def test_bad_audio_raises_audio_read_error(tmp_path):
    (tmp_path / "junk.flac").write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioReadError, match="junk.flac: cannot read audio"):
        load_audio(tmp_path / "junk.flac")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioReadError, match="zero-length"):
        load_audio(tmp_path / "empty.wav")
    x = _sine(100, 16000, 0.1)
    x[5] = np.nan
    sf.write(tmp_path / "nan.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="NaN or Inf"):
        load_audio(tmp_path / "nan.wav")


def test_fix_length_crop_and_repeat_pad_invariants():
    w = torch.arange(10, dtype=torch.float32)
    assert fix_length(w, 4, offset=3).tolist() == [3, 4, 5, 6]
    assert fix_length(w, 4, offset=99).tolist() == [6, 7, 8, 9]  # clamped to the last valid start
    assert fix_length(w, 10).tolist() == w.tolist()
    padded = fix_length(w, 25)
    assert padded.shape == (25,)
    assert torch.equal(padded[:10], w) and torch.equal(padded[10:20], w) and torch.equal(padded[20:], w[:5])
    batch = torch.stack([w, w + 100])
    assert fix_length(batch, 23).shape == (2, 23)
    assert torch.equal(fix_length(batch, 23)[1, 10:20], w + 100)
    with pytest.raises(ValueError):
        fix_length(torch.zeros(0), 5)


def test_crop_offset_random_in_range_and_deterministic():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = [crop_offset(100_000, 66_800, g1) for _ in range(50)]
    b = [crop_offset(100_000, 66_800, g2) for _ in range(50)]
    assert a == b and all(0 <= x <= 100_000 - 66_800 for x in a) and len(set(a)) > 40
    assert crop_offset(100_000, 66_800, None) == 0  # eval: always from the start
    assert crop_offset(50_000, 66_800, g1) == 0  # shorter than the crop: padded instead


# ------------------------------------------------------------------------------ scoring reads a window
LENGTH = 48_000  # samples at 16 kHz scored per file (3 s)


class _ReadSpy:
    """Records the frames each SoundFile.read returned (what a decode held in memory)."""

    def __init__(self, monkeypatch):
        self.rows: list[int] = []
        real = sf.SoundFile.read

        def read(fh, *args, **kwargs):
            data = real(fh, *args, **kwargs)
            self.rows.append(len(data))
            return data

        monkeypatch.setattr(sf.SoundFile, "read", read)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("seconds", [1.0, 2.99, 3.5, 7.0])
def test_a_scoring_window_read_alone_equals_the_window_of_the_whole_file(tmp_path, rate, seconds):
    """Reading only what the window needs (then resampling that) changes no sample of it, for
    files shorter than the window (tiled: the whole file is read), about as long, and longer."""
    path = tmp_path / "a.wav"
    noise = np.random.default_rng(rate).uniform(-0.5, 0.5, (int(rate * seconds), 2))
    sf.write(path, noise, rate, subtype="PCM_24")
    whole = fix_length(load_audio(path), LENGTH)
    window = fix_length(load_audio(path, max_samples=LENGTH), LENGTH)
    assert torch.equal(window, whole)


def test_a_long_file_is_scored_from_a_bounded_read(tmp_path, monkeypatch):
    """A 10-minute 48 kHz file: the eval dataset and `load_audio(max_samples=...)` decode about
    the window (3 s) plus a 2 s margin at 48 kHz, not 28.8 million frames."""
    from dpda.data.dataset import AudioDataset
    from dpda.data.manifest import make_manifest

    path = tmp_path / "long.wav"
    block = np.random.default_rng(0).uniform(-0.3, 0.3, 48_000 * 10)
    with sf.SoundFile(path, "w", 48_000, 1, subtype="PCM_16") as fh:
        for _ in range(60):
            fh.write(block)
    bound = LENGTH * 3 + 2 * 48_000
    spy = _ReadSpy(monkeypatch)
    wave = load_audio(path, max_samples=LENGTH)
    assert spy.rows == [bound] and wave.shape[-1] >= LENGTH
    manifest = make_manifest({"utt": ["u"], "path": [str(path)], "label": ["spoof"], "corpus": ["c"], "subset": ["eval"],
                              "source_file": ["list.csv"], "source_line": [2]})
    wave, _, _ = AudioDataset(manifest, length=LENGTH, train=False)[0]
    assert spy.rows == [bound, bound] and wave.shape == (LENGTH,)
    # the window is what the whole file's first 3 s give
    head = tmp_path / "head.wav"
    sf.write(head, sf.read(path, frames=bound, dtype="float32")[0], 48_000, subtype="PCM_16")
    assert torch.equal(wave, fix_length(load_audio(head), LENGTH))
