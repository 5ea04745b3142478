"""Each augmentation transform against an independent reference (issue 30 A): gain exact in dB,
mu-law / A-law equal to Python's audioop (G.711), G.722 equal to the g722 package's round trip,
mp3 / opus through libsndfile, speed lengths, band_drop removes the band (FFT), clip bounds."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from dpda.augment import codecs, g711, level, spectral, speed
from dpda.augment.registry import TRANSFORMS
from dpda.data.realset import codec as g722

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # removed in Python 3.13: the reference for G.711 here, in tests only


def _speech_like(batch: int = 4, time: int = 16000, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(time) / 16000
    tones = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate((180.0, 420.0, 1300.0, 3100.0), 1))
    return (0.2 * tones + 0.05 * torch.randn(batch, time, generator=g)).float()


def test_gain_is_exact_in_db() -> None:
    x = _speech_like()
    params = level.GainParams(db=[-12, 12])
    drawn = level.draw_gain(params, 4, x.shape[1], torch.Generator().manual_seed(1), torch.device("cpu"))
    y = level.apply_gain(params, x.double(), drawn)
    achieved = 20 * torch.log10(y.norm(dim=1) / x.double().norm(dim=1))
    torch.testing.assert_close(achieved, drawn["db"], atol=1e-9, rtol=0)
    assert ((drawn["db"] >= -12) & (drawn["db"] <= 12)).all()


def test_clip_bounds_each_row_at_its_fraction_of_the_peak() -> None:
    x = _speech_like()
    fraction = torch.tensor([0.3, 0.5, 0.9, 1.0], dtype=torch.float64)
    y = level.clip(x, fraction)
    limit = x.abs().amax(1) * fraction.float()
    torch.testing.assert_close(y.abs().amax(1), limit)
    inside = x.abs() <= limit[:, None]
    assert torch.equal(y[inside], x[inside])  # below the limit nothing changes
    assert torch.equal(level.clip(torch.zeros(1, 10), fraction[:1]), torch.zeros(1, 10))


def test_band_drop_removes_the_band_energy_and_keeps_the_rest() -> None:
    x = _speech_like(batch=2, time=8000).double()
    low, high = torch.tensor([1000.0, 0.0]), torch.tensor([1500.0, 400.0])
    y = spectral.band_drop(x, low, high)
    before, after = torch.fft.rfft(x), torch.fft.rfft(y)
    band = spectral.band_bins(8000, low, high)
    assert band.sum(1).tolist() == [251, 201]  # 2-Hz bins: [1000, 1500] and [0, 400] inclusive
    assert after[band].abs().max() < 1e-9 * before.abs().max()
    torch.testing.assert_close(after[~band], before[~band])


def test_band_drop_draws_stay_inside_nyquist() -> None:
    params = spectral.BandDropParams(centre_hz=[7900, 8000], width_hz=[1000, 1000])
    drawn = spectral.draw_band_drop(params, 64, 100, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert (drawn["high_hz"] <= 8000).all() and (drawn["low_hz"] >= 6900).all()


@pytest.mark.parametrize("factor", ["0.9", "1.1", "0.95", "1.37", "1"])
@pytest.mark.parametrize("time", [16000, 12345])
def test_speed_resamples_to_round_t_over_factor_then_back_to_t(factor: str, time: int) -> None:
    x = _speech_like(batch=2, time=time)
    f = Fraction(factor)
    moved = speed.resample_by(x, f)
    assert moved.shape[-1] == round(time / f)
    units = torch.full((2,), round(float(f) * speed.STEP))
    y = speed.speed(x, units)
    assert y.shape == x.shape
    expected = speed.fit_length(moved, time)
    torch.testing.assert_close(y, expected)
    if f > 1:  # shorter: zero-padded at the end
        assert torch.equal(y[:, round(time / f):], torch.zeros(2, time - round(time / f)))


def test_speed_moves_a_tone_by_the_factor() -> None:
    t = torch.arange(16000) / 16000
    x = torch.sin(2 * torch.pi * 1000 * t)[None].double()
    y = speed.speed(x, torch.tensor([110]))
    n = round(16000 / 1.1)
    peak_hz = torch.fft.rfftfreq(n, 1 / 16000)[torch.fft.rfft(y[0, :n]).abs().argmax()]
    assert abs(float(peak_hz) - 1100) < 2


def test_speed_rows_with_different_factors_equal_each_row_alone() -> None:
    x = _speech_like(batch=4)
    units = torch.tensor([90, 110, 100, 90])
    y = speed.speed(x, units)
    for i in range(4):
        torch.testing.assert_close(y[i:i + 1], speed.speed(x[i:i + 1], units[i:i + 1]))
    assert torch.equal(y[2], x[2])


def test_speed_range_draws_hundredths_inside_the_range() -> None:
    params = speed.SpeedParams(range=[0.9, 1.1])
    drawn = speed.draw_speed(params, 200, 10, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert drawn["factor"].min() >= 90 and drawn["factor"].max() <= 110
    assert set(speed.SpeedParams().table) == {90, 100, 110}


@pytest.mark.parametrize(("law", "enc", "dec"), [("mulaw", audioop.lin2ulaw, audioop.ulaw2lin),
                                                 ("alaw", audioop.lin2alaw, audioop.alaw2lin)])
def test_g711_equals_audioop_on_every_16_bit_value(law, enc, dec) -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int16)
    encoder, decoder = g711.tables(law, torch.device("cpu"))
    assert np.array_equal(encoder.numpy(), np.frombuffer(enc(pcm.tobytes(), 2), dtype=np.uint8))
    assert np.array_equal(decoder.numpy(), np.frombuffer(dec(bytes(range(256)), 2), dtype=np.int16))
    # and the float round trip of a waveform equals audioop's on its 16-bit PCM
    x = _speech_like(batch=1)[0]
    pcm = g711.to_pcm16(x).numpy().astype(np.int16)
    reference = np.frombuffer(dec(enc(pcm.tobytes(), 2), 2), dtype=np.int16) / 32768.0
    assert np.array_equal(g711.round_trip(x, law).numpy(), reference.astype(np.float32))


def test_g722_equals_the_g722_packages_round_trip() -> None:
    x = _speech_like(batch=2)
    params = codecs.CodecParams(kind="g722")
    y = codecs.apply_codec(params, x, codecs.draw_codec(params, 2, 16000, None, torch.device("cpu")))
    for i in range(2):
        assert np.array_equal(y[i].numpy(), g722.round_trip(x[i].numpy()))


@pytest.mark.parametrize("kind", ["mp3", "opus"])
def test_compressed_codecs_keep_the_length_and_most_of_the_signal(kind: str) -> None:
    x = _speech_like(batch=1)
    params = codecs.CodecParams(kind=kind, compression=[0.0, 0.0])
    drawn = codecs.draw_codec(params, 1, 16000, torch.Generator().manual_seed(0), torch.device("cpu"))
    y = codecs.apply_codec(params, x, drawn)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(y, x)
    direct = codecs.compressed_round_trip(x[0].numpy(), kind, 0.0)
    assert np.array_equal(y[0].numpy()[: len(direct)], direct[:16000])
    assert torch.equal(y, codecs.apply_codec(params, x, drawn))  # the encoders are deterministic


def test_where_each_transform_runs() -> None:
    def where(name, **values):
        t = TRANSFORMS[name]
        return t.where(t.params(**values))

    assert [where(n) for n in ("rawboost", "gain", "clip", "band_drop", "speed")] == ["device"] * 5
    assert [where("codec", kind=k) for k in ("mulaw", "alaw", "g722", "mp3", "opus")] == \
        ["device", "device", "loader", "loader", "loader"]
