"""LFCC-LCNN: shapes, sizes, any input length, silent input, seeding, MFM and front-end behaviour."""

from __future__ import annotations

import pytest
import torch

from dpda.errors import UserError
from dpda.models import build_model, count_parameters, model_config
from dpda.models.lcnn import LFCCFrontEnd, MFMConv2d

torch.set_num_threads(1)


def _wave(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, length, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("preset", ["tiny", "full"])
def test_forward_backward_shapes_and_all_parameters_get_gradients(preset):
    model = build_model("lcnn", preset, seed=0)
    logits = model(_wave(3, 16000))
    assert logits.shape == (3, 2) and torch.isfinite(logits).all()
    logits[:, 1].sum().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_parameter_counts():
    assert count_parameters(build_model("lcnn", "tiny", seed=0)) == 35_482
    assert count_parameters(build_model("lcnn", "full", seed=0)) == 336_826  # baseline LCNN-LSTM scale


@pytest.mark.parametrize("preset", ["tiny", "full"])
@pytest.mark.parametrize("length", [320, 321, 1000, 5555, 40000])
def test_any_input_length(preset, length):
    model = build_model("lcnn", preset, seed=0).eval()
    with torch.no_grad():
        logits = model(_wave(2, length))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


def test_too_short_input_is_a_user_error():
    with pytest.raises(UserError, match="shorter than the 320-sample analysis window"):
        build_model("lcnn", "tiny", seed=0)(torch.randn(1, 100))


@pytest.mark.parametrize("preset", ["tiny", "full"])
def test_silent_input_gives_finite_logits_and_gradients(preset):
    model = build_model("lcnn", preset, seed=0)
    logits = model(torch.zeros(4, 16000))
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_seed_determinism_and_rng_isolation():
    before = torch.random.get_rng_state()
    a = build_model("lcnn", "tiny", seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_model("lcnn", "tiny", seed=7)
    c = build_model("lcnn", "tiny", seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    wave = _wave(2, 16000)
    a.eval(), b.eval()
    with torch.no_grad():
        torch.testing.assert_close(a(wave), b(wave), rtol=0, atol=0)


def test_eval_output_of_one_utterance_does_not_depend_on_its_batch():
    model = build_model("lcnn", "tiny", seed=0).eval()
    wave = _wave(3, 16000)
    with torch.no_grad():
        torch.testing.assert_close(model(wave)[:1], model(wave[:1]), rtol=1e-5, atol=1e-5)


def test_mfm_is_elementwise_max_of_channel_halves():
    mfm = MFMConv2d(2, 3, 3)
    x = torch.randn(1, 2, 5, 7)
    full = mfm.conv(x)
    torch.testing.assert_close(mfm(x), torch.maximum(full[:, :3], full[:, 3:]))


def test_frontend_shapes_normalisation_and_frame_rate():
    fe = LFCCFrontEnd(n_lfcc=20, n_filter=20, feature_norm="meanvar")
    feats = fe(_wave(2, 16000))
    assert feats.shape == (2, 60, 101)  # 3 x 20 coefficients, 10 ms hop (centred frames)
    torch.testing.assert_close(feats.mean(-1), torch.zeros(2, 60), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(-1, unbiased=False), torch.ones(2, 60), atol=1e-3, rtol=0)
    # Per-utterance mean/var normalisation makes the features invariant to the input gain.
    torch.testing.assert_close(fe(3.0 * _wave(2, 16000)), feats, atol=1e-3, rtol=1e-3)
    raw = LFCCFrontEnd(feature_norm="none")(_wave(1, 16000))
    centred = LFCCFrontEnd(feature_norm="mean")(_wave(1, 16000))
    torch.testing.assert_close(centred, raw - raw.mean(-1, keepdim=True))


def test_linear_filterbank_separates_tones_by_frequency():
    """LFCC keeps high-frequency detail: 6 kHz and 7 kHz tones give clearly different cepstra."""
    t = torch.arange(16000) / 16000
    tones = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (6000.0, 7000.0)])
    fe = LFCCFrontEnd(n_lfcc=20, n_filter=20, feature_norm="none", pre_emphasis=0.0)
    c = fe(tones)[:, :20].mean(-1)
    assert (c[0] - c[1]).abs().max() > 1.0


def test_lps_front_end_is_the_normalised_log_power_spectrum_and_resolves_harmonics():
    """`features: lps` keeps what the 20-filter cepstrum averages away: two harmonic tones 125 Hz
    apart inside one 400-Hz LFCC filter give near-equal LFCC but distinct log power spectra."""
    fe = LFCCFrontEnd(features="lps", feature_norm="none", pre_emphasis=0.0)
    wave = _wave(2, 16000)
    feats = fe(wave)
    assert feats.shape == (2, 257, 101) and fe.out_dim == 257
    power = torch.stft(wave, 512, 160, win_length=320, window=torch.hann_window(320), center=True,
                       pad_mode="constant", return_complex=True).abs().pow(2)
    torch.testing.assert_close(feats, torch.log(power + 1e-8), atol=1e-4, rtol=1e-4)
    t = torch.arange(16000) / 16000
    tones = torch.stack([sum(torch.sin(2 * torch.pi * k * f0 * t) for k in (16, 17)) for f0 in (250.0, 256.25)])
    lfcc = LFCCFrontEnd(feature_norm="none", pre_emphasis=0.0)(tones)[:, :20].mean(-1)
    lps = fe(tones).mean(-1)
    assert (lps[0] - lps[1]).abs().max() > 5 * (lfcc[0] - lfcc[1]).abs().max()
    model = build_model("lcnn", "tiny", seed=0, features="lps")
    assert model(_wave(3, 8000)).shape == (3, 2)


def test_configuration_errors_name_the_parameter():
    with pytest.raises(UserError, match="unknown parameter 'dropuot'"):
        build_model("lcnn", "tiny", dropuot=0.1)
    with pytest.raises(UserError, match="feature_norm must be one of"):
        build_model("lcnn", "tiny", feature_norm="instance")
    with pytest.raises(UserError, match="features must be one of lfcc, lps"):
        build_model("lcnn", "tiny", features="cqt")
    with pytest.raises(UserError, match="n_lfcc=30 must be <= n_filter=20"):
        build_model("lcnn", "tiny", n_lfcc=30)
    with pytest.raises(UserError, match="channels must be"):
        build_model("lcnn", "tiny", channels=())
    with pytest.raises(UserError, match="dropout must be in"):
        build_model("lcnn", "tiny", dropout=1.0)
    assert model_config("lcnn", "tiny", lstm_layers=1)["lstm_layers"] == 1
    model = build_model("lcnn", "tiny", seed=0, lstm_layers=1)
    assert model.lstm is not None and model(_wave(1, 8000)).shape == (1, 2)
