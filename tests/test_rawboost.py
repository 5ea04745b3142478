"""RawBoost: invariants of each algorithm, equivalence with SciPy on explicit draws, composition of
the series/parallel algorithms, determinism, edge cases and parameter validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from dpda.augment import RawBoost, RawBoostParams
from dpda.augment import functional as Fn
from dpda.errors import UserError

FS = 16000


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def speechlike(batch: int, time: int, seed: int = 0, scale: float = 0.3) -> torch.Tensor:
    """Band-limited random signals with peak below 1 (so the optional normalisation stays off)."""
    g = gen(seed)
    x = torch.randn(batch, time, generator=g, dtype=torch.float64)
    x = torch.nn.functional.avg_pool1d(x.unsqueeze(1), 3, 1, 1).squeeze(1)
    return (scale * x / x.abs().amax(dim=1, keepdim=True)).float()


def aligned_lfilter(b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reference: causal lfilter on the zero-extended signal, advanced by (taps-1)//2 samples."""
    d = (len(b) - 1) // 2
    y = signal.lfilter(b, [1.0], np.concatenate([x, np.zeros(d)]))
    return y[d : d + len(x)]


def scipy_bank(fc, bw, taps, gain_db) -> np.ndarray:
    """Independent notch bank: firwin per band, np.convolve, peak on freqz's default grid."""
    b = np.ones(1)
    for f, w, c in zip(fc, bw, taps):
        f1, f2 = f - w / 2, f + w / 2
        f1 = 1e-3 if f1 <= 0 else f1
        f2 = FS / 2 - 1e-3 if f2 >= FS / 2 else f2
        b = np.convolve(signal.firwin(int(c), [f1, f2], window="hamming", pass_zero="bandstop", fs=FS), b)
    _, h = signal.freqz(b, 1, fs=FS)
    return 10 ** (gain_db / 20) * b / np.abs(h).max()


# ---------------------------------------------------------------- filter design vs SciPy

@pytest.mark.parametrize(
    "taps,f1,f2",
    [(11, 300.0, 800.0), (51, 1e-3, 450.0), (99, 7500.0, 8000 - 1e-3), (1, 100.0, 200.0), (3, 2000.0, 2100.0),
     (101, 20.0, 120.0)],
)
def test_firwin_bandstop_matches_scipy(taps, f1, f2):
    length = 105
    h = Fn.firwin_bandstop(torch.tensor([taps]), torch.tensor([f1], dtype=torch.float64),
                           torch.tensor([f2], dtype=torch.float64), FS, length)[0].numpy()
    ref = signal.firwin(taps, [f1, f2], window="hamming", pass_zero="bandstop", fs=FS)
    pad = (length - taps) // 2
    np.testing.assert_allclose(h[pad : pad + taps], ref, rtol=1e-10, atol=1e-12)
    assert np.all(h[:pad] == 0) and np.all(h[pad + taps :] == 0)


def test_notch_bank_matches_scipy_convolution_and_freqz_peak():
    fc = torch.tensor([[500.0, 3000.0, 7900.0], [40.0, 6000.0, 6100.0]], dtype=torch.float64)
    bw = torch.tensor([[200.0, 900.0, 400.0], [300.0, 150.0, 1000.0]], dtype=torch.float64)
    taps = torch.tensor([[11, 53, 99], [101, 25, 1]])
    gain = torch.tensor([0.0, -7.5], dtype=torch.float64)
    banks = Fn.notch_bank(fc, bw, taps, gain, FS, band_length=101).numpy()
    assert banks.shape == (2, 3 * 100 + 1)
    for i in range(2):
        ref = scipy_bank(fc[i].numpy(), bw[i].numpy(), taps[i].numpy(), float(gain[i]))
        pad = (banks.shape[1] - len(ref)) // 2  # the bank is centred in its padded length
        np.testing.assert_allclose(banks[i, pad : pad + len(ref)], ref, rtol=1e-9, atol=1e-12)
        assert np.abs(banks[i, :pad]).max() < 1e-12 and np.abs(banks[i, pad + len(ref) :]).max() < 1e-12


@pytest.mark.parametrize("time", [1, 7, 500, 4097, 9000])
def test_fir_filter_matches_lfilter_with_delay_compensation(time):
    rng = np.random.default_rng(time)
    x = rng.standard_normal((3, time))
    firs = [signal.firwin(41, [1000, 2000], pass_zero="bandstop", fs=FS),
            rng.standard_normal(601),  # longer than some inputs, not symmetric
            np.array([0.7])]
    for b in firs:
        got = Fn.fir_filter(torch.from_numpy(x), torch.from_numpy(b)).numpy()
        for row in range(3):
            np.testing.assert_allclose(got[row], aligned_lfilter(b, x[row]), rtol=1e-9, atol=1e-9)


def test_fir_filter_per_utterance_filters_float32():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3000)).astype(np.float32)
    b = rng.standard_normal((2, 101))
    got = Fn.fir_filter(torch.from_numpy(x), torch.from_numpy(b))
    assert got.dtype == torch.float32
    for row in range(2):
        ref = aligned_lfilter(b[row], x[row].astype(np.float64))
        np.testing.assert_allclose(got[row].numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


# ---------------------------------------------------------------- operations vs NumPy references

def test_lnl_matches_numpy_reference():
    rng = np.random.default_rng(2)
    x = rng.uniform(-0.9, 0.9, (2, 2500))
    banks = rng.standard_normal((2, 3, 61)) * 0.3
    got = Fn.lnl(torch.from_numpy(x), torch.from_numpy(banks)).numpy()
    for row in range(2):
        y = sum(aligned_lfilter(banks[row, i], x[row] ** (i + 1)) for i in range(3))
        y = y - y.mean()
        if np.abs(y).max() > 1:
            y = y / np.abs(y).max()
        np.testing.assert_allclose(got[row], y, rtol=1e-9, atol=1e-10)


def test_isd_matches_definition_and_normalises():
    x = torch.tensor([[0.5, -0.2, 0.9, 0.1], [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    pos = torch.tensor([[2, -1, 0], [-1, -1, -1]])  # -1: unused slot
    f = torch.tensor([[0.25, 0.9, 0.5], [1.0, 1.0, 1.0]], dtype=torch.float64)
    y = Fn.isd(x, pos, f, g_sd=2.0)
    # Row 0: 0.5 -> 0.5 * 2 = 1.0, 0.9 -> 0.9 * 1.5 = 1.35 -> normalised by 1.35.
    expect = torch.tensor([1.0, -0.2, 1.35, 0.1], dtype=torch.float64) / 1.35
    torch.testing.assert_close(y[0], expect)
    torch.testing.assert_close(y[1], x[1])  # no positions: unchanged, factors ignored


def test_isd_matches_numpy_reference_on_random_draws():
    rng = np.random.default_rng(17)
    x = rng.uniform(-0.3, 0.3, (3, 1000))
    pos = np.stack([rng.permutation(1000)[:80] for _ in range(3)])
    pos[1, 50:] = -1
    f = (2 * rng.random((3, 80)) - 1) * (2 * rng.random((3, 80)) - 1)
    got = Fn.isd(torch.from_numpy(x), torch.from_numpy(pos), torch.from_numpy(f), g_sd=2.0).numpy()
    for row in range(3):
        y = x[row].copy()
        p, r = pos[row][pos[row] >= 0], f[row][pos[row] >= 0]
        y[p] = x[row][p] + 2.0 * x[row][p] * r
        if np.abs(y).max() > 1:
            y = y / np.abs(y).max()
        np.testing.assert_allclose(got[row], y, rtol=1e-12, atol=0)


def test_ssi_matches_numpy_reference_and_realised_snr():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3000)) * 0.1
    noise = rng.standard_normal((2, 3000))
    bank = rng.standard_normal((2, 31))
    snr = np.array([12.5, 33.0])
    got = Fn.ssi(torch.from_numpy(x), torch.from_numpy(noise), torch.from_numpy(bank), torch.from_numpy(snr)).numpy()
    for row in range(2):
        n = aligned_lfilter(bank[row], noise[row])
        n = n / np.abs(n).max()  # the published peak normalisation (scale-free here)
        n = n / np.linalg.norm(n) * np.linalg.norm(x[row]) / 10 ** (0.05 * snr[row])
        np.testing.assert_allclose(got[row], x[row] + n, rtol=1e-9, atol=1e-12)
        realised = 20 * np.log10(np.linalg.norm(x[row]) / np.linalg.norm(got[row] - x[row]))
        assert realised == pytest.approx(snr[row], abs=1e-9)


# ---------------------------------------------------------------- module invariants

def test_ssi_realised_snr_within_range_over_many_seeds():
    rb = RawBoost(3, SNRmin=10, SNRmax=40)
    x = speechlike(12, 2000, seed=4).double()
    snrs = []
    for seed in range(6):
        y = rb(x, gen(seed))
        snr = 20 * torch.log10(x.norm(dim=1) / (y - x).norm(dim=1))
        snrs.append(snr)
    snrs = torch.cat(snrs)
    assert snrs.min() >= 10 - 1e-9 and snrs.max() <= 40 + 1e-9
    assert snrs.max() - snrs.min() > 20  # the range is actually used, per utterance


def test_isd_hits_at_most_p_percent_each_by_defined_factor():
    P, g_sd, time, batch = 10.0, 2.0, 5000, 16
    rb = RawBoost(2, P=P, g_sd=g_sd)
    x = speechlike(batch, time, seed=5, scale=0.2).double()  # peak 0.2 * 3 < 1: never normalised
    counts = []
    for seed in range(4):
        draws = rb.draw_isd(batch, time, gen(seed))
        mask = draws.mask(time)
        used = draws.positions >= 0
        beta = torch.rand(batch, generator=gen(seed), dtype=torch.float64) * P  # first draw: beta
        hit = mask.sum(dim=1)
        assert torch.equal(hit, used.sum(dim=1))  # positions are distinct
        assert torch.equal(hit, torch.floor(time * beta / 100).long())  # exactly floor(T beta/100)
        y = rb(x, gen(seed))
        changed = y != x
        assert torch.equal(changed & ~mask, torch.zeros_like(changed))
        assert (changed.sum(dim=1) <= math.floor(time * P / 100)).all()
        rows = torch.arange(batch).unsqueeze(1).expand_as(draws.positions)[used]
        cols = draws.positions[used]
        ratio = y[rows, cols] / x[rows, cols] - 1
        assert ratio.abs().max() <= g_sd + 1e-12
        torch.testing.assert_close(ratio, g_sd * draws.factors[used].double())
        counts.append(hit)
    fraction = torch.cat(counts).double().mean() / time
    assert 0.03 < fraction < 0.07  # beta ~ U(0, P): mean P/2 %


def test_isd_positions_are_uniform_and_independent_of_chunking():
    rb = RawBoost(2, P=50)
    draws = rb.draw_isd(400, 100, gen(6))
    per_position = draws.mask(100).double().mean(dim=0)  # expected 0.25 everywhere
    assert (per_position - 0.25).abs().max() < 0.1
    from dpda.augment.draws import draw_isd

    for rows in (1, 7, 400):
        again = draw_isd(rb.params, 400, 100, gen(6), torch.device("cpu"), chunk_rows=rows)
        assert torch.equal(again.positions, draws.positions) and torch.equal(again.factors, draws.factors)
    # Every 2-subset of 4 positions equally likely (6 subsets), though most draws repeat a position.
    rb = RawBoost(2, P=60)
    batch = 6000
    subsets = torch.zeros(6, dtype=torch.long)
    seen = 0
    for seed in range(3):
        d = rb.draw_isd(batch, 4, gen(seed))
        two = (d.positions >= 0).sum(dim=1) == 2
        pos = d.positions[two].sort(dim=1).values
        code = {(0, 1): 0, (0, 2): 1, (0, 3): 2, (1, 2): 3, (1, 3): 4, (2, 3): 5}
        for a, b in pos.tolist():
            subsets[code[(a, b)]] += 1
        seen += int(two.sum())
    expected = seen / 6
    chi2 = float(((subsets - expected) ** 2 / expected).sum())
    assert seen > 1000 and chi2 < 20.5  # chi-square, 5 degrees of freedom, p = 0.001


def test_lnl_notches_every_drawn_centre():
    # N_f = 1, 0 dB gain, long filters and wide bands: deep stop bands at each centre frequency.
    rb = RawBoost(1, N_f=1, minG=0, maxG=0, minCoeff=301, maxCoeff=301, minBW=1000, maxBW=1000,
                  minF=600, maxF=7000)
    batch, time = 4, 16000
    draws = rb.draw_lnl(batch, gen(7))
    banks = draws.banks[:, 0].numpy()
    centres = draws.notch.centre_hz[:, 0].numpy()
    for b in range(batch):
        k = np.arange(banks.shape[1])
        h_at = np.abs(np.exp(-2j * np.pi * np.outer(centres[b], k) / FS) @ banks[b])
        assert h_at.max() < 10 ** (-30 / 20)  # every centre at least 30 dB down
        _, h = signal.freqz(banks[b], 1, fs=FS)
        assert np.abs(h).max() == pytest.approx(1.0, rel=1e-6)  # 0 dB peak (the draws are float32)
    # The same draws through the module: a tone at each utterance's first centre is removed.
    t = torch.arange(time, dtype=torch.float64) / FS
    x = 0.5 * torch.sin(2 * math.pi * torch.from_numpy(centres[:, 0:1]) * t)
    y = rb(x, gen(7))
    middle = slice(1000, time - 1000)
    assert (y[:, middle].pow(2).mean(dim=1) / x[:, middle].pow(2).mean(dim=1)).max() < 10 ** (-30 / 10)


def test_lnl_gain_range_lowered_for_nonlinear_terms():
    rb = RawBoost(1, minG=-2, maxG=3, minBiasLinNonLin=5, maxBiasLinNonLin=20)
    gain = rb.draw_lnl(64, gen(8)).notch.gain_db
    assert gain[:, 0].min() >= -2 and gain[:, 0].max() <= 3
    lowered = gain[:, 1:]
    assert lowered.min() >= -17 - 1e-12 and lowered.max() <= -7 + 1e-12


def test_tap_counts_are_odd_and_in_range():
    rb = RawBoost(1, minCoeff=10, maxCoeff=20)
    taps = rb.draw_lnl(64, gen(9)).notch.taps
    assert (taps % 2 == 1).all() and taps.min() >= 11 and taps.max() <= 21


@pytest.mark.parametrize("algo", range(9))
@pytest.mark.parametrize("time", [1, 3, 777, 4096])
def test_output_shape_dtype_and_finite(algo, time):
    x = speechlike(3, time, seed=10)
    y = RawBoost(algo)(x, gen(0))
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()


@pytest.mark.parametrize("algo", range(9))
def test_all_zero_input_gives_finite_output(algo):
    x = torch.zeros(2, 3000)
    y = RawBoost(algo)(x, gen(0))
    assert torch.isfinite(y).all()
    if algo in (0, 1, 2, 3, 5, 7, 8):  # no signal, so no noise scaled relative to it either
        assert torch.equal(y, x)


@pytest.mark.parametrize("kwargs", [{"P": 0}, {"nBands": 0}, {"minCoeff": 1, "maxCoeff": 1},
                                    {"minCoeff": 1500, "maxCoeff": 2000, "nBands": 2}, {"N_f": 1}])
def test_edge_parameters_give_finite_output(kwargs):
    x = speechlike(2, 2000, seed=19)
    for algo in (4, 8):
        y = RawBoost(algo, **kwargs)(x, gen(0))
        assert y.shape == x.shape and torch.isfinite(y).all()


def test_no_bands_means_gain_only():
    x = speechlike(2, 2000, seed=20).double()
    y = RawBoost(1, nBands=0, N_f=1, minG=-6, maxG=-6)(x, gen(0))
    torch.testing.assert_close(y, (x - x.mean(dim=1, keepdim=True)) * 10 ** (-6 / 20))


@pytest.mark.parametrize("algo", [1, 4, 8])
def test_float64_preserved_and_close_to_float32(algo):
    x = speechlike(2, 3000, seed=11)
    y32 = RawBoost(algo)(x, gen(3))
    y64 = RawBoost(algo)(x.double(), gen(3))
    assert y64.dtype == torch.float64 and y32.dtype == torch.float32
    torch.testing.assert_close(y64.float(), y32, rtol=1e-3, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_device_preserved_cuda():
    x = speechlike(2, 3000).cuda()
    y = RawBoost(4)(x, torch.Generator(device="cuda").manual_seed(0))
    assert y.device == x.device and y.shape == x.shape


def test_device_preserved_cpu_and_single_waveform():
    rb = RawBoost(4)
    x = speechlike(1, 3000, seed=12)
    y = rb(x[0], gen(1))
    assert y.device == x.device and y.shape == x[0].shape
    torch.testing.assert_close(y, rb(x, gen(1))[0])


def test_same_seed_same_output_and_utterances_differ():
    rb = RawBoost(4)
    x = speechlike(1, 4000, seed=13).expand(4, -1).contiguous()
    y1, y2 = rb(x, gen(42)), rb(x, gen(42))
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, rb(x, gen(43)))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(y1[i], y1[j])  # identical inputs, own draws each


@pytest.mark.parametrize("algo,parts", [(4, (1, 2, 3)), (5, (1, 2)), (6, (1, 3)), (7, (2, 3))])
def test_series_algorithms_equal_composition_of_parts(algo, parts):
    x = speechlike(3, 5000, seed=14)
    g = gen(5)
    expect = x
    for part in parts:
        expect = RawBoost(part)(expect, g)
    torch.testing.assert_close(RawBoost(algo)(x, gen(5)), expect, rtol=0, atol=0)


def test_parallel_algorithm_equals_sum_of_parts_normalised():
    x = speechlike(3, 5000, seed=15)
    g = gen(6)
    summed = RawBoost(1)(x, g) + RawBoost(2)(x, g)
    expect = summed / summed.abs().amax(dim=1, keepdim=True).clamp_min(1)
    torch.testing.assert_close(RawBoost(8)(x, gen(6)), expect)


def test_module_equals_functional_on_its_draws():
    rb = RawBoost(4)
    x = speechlike(2, 6000, seed=16)
    g = gen(7)
    lnl = rb.draw_lnl(2, g)
    y = Fn.lnl(x, lnl.banks)
    isd = rb.draw_isd(2, 6000, g)
    y = Fn.isd(y, isd.positions, isd.factors, rb.params.g_sd)
    ssi = rb.draw_ssi(2, 6000, g)
    y = Fn.ssi(y, ssi.noise, ssi.bank, ssi.snr_db)
    torch.testing.assert_close(rb(x, gen(7)), y, rtol=0, atol=0)


def test_draw_then_apply_equals_forward_and_chunking_does_not_matter(monkeypatch):
    import dpda.augment.draws as module

    rb = RawBoost(4)
    x = speechlike(5, 3000, seed=18)
    draws = rb.draw(5, 3000, gen(9))
    expect = rb(x, gen(9))
    torch.testing.assert_close(rb.apply(x, draws), expect, rtol=0, atol=0)
    monkeypatch.setattr(module, "CPU_CHUNK_SAMPLES", 6000)  # 2 utterances per chunk
    torch.testing.assert_close(rb.apply(x, draws), expect, rtol=0, atol=0)


# ---------------------------------------------------------------- parameters

def test_defaults_are_published_values():
    p = RawBoost().params
    assert (p.algo, p.N_f, p.nBands, p.minF, p.maxF, p.minBW, p.maxBW, p.minCoeff, p.maxCoeff) == (
        4, 5, 5, 20, 8000, 100, 1000, 10, 100)
    assert (p.minG, p.maxG, p.minBiasLinNonLin, p.maxBiasLinNonLin, p.P, p.g_sd, p.SNRmin, p.SNRmax) == (
        0, 0, 5, 20, 10, 2, 10, 40)
    assert p.sample_rate == 16000


@pytest.mark.parametrize(
    "kwargs,name",
    [({"algo": 9}, "algo"), ({"algo": -1}, "algo"), ({"maxF": 8001}, "maxF"),
     ({"maxF": 4000, "sample_rate": 8000, "minF": 10}, None), ({"maxF": 5000, "sample_rate": 8000}, "maxF"),
     ({"N_f": 0}, "N_f"), ({"nBands": -1}, "nBands"), ({"minCoeff": -3}, "minCoeff"),
     ({"minCoeff": 50, "maxCoeff": 20}, "minCoeff"), ({"minF": 3000, "maxF": 2000}, "minF"),
     ({"minBW": 500, "maxBW": 100}, "minBW"), ({"minBW": 0}, "minBW"), ({"P": 101}, "P"), ({"P": -1}, "P"),
     ({"SNRmin": 30, "SNRmax": 20}, "SNRmin"), ({"g_sd": -1}, "g_sd"), ({"N_f": 2.5}, "N_f"),
     ({"minF": "low"}, "minF"), ({"SNRmax": float("nan")}, "SNRmax"), ({"sample_rate": 0}, "sample_rate")],
)
def test_invalid_parameters_raise_naming_the_parameter(kwargs, name):
    if name is None:  # a valid combination, for contrast
        RawBoost(**kwargs)
        return
    with pytest.raises(UserError, match=rf"^{name}\b"):
        RawBoost(**kwargs)
    with pytest.raises(UserError, match=rf"^{name}\b"):
        RawBoost.from_config(kwargs)


def test_from_config_accepts_published_names_and_rejects_unknown_keys():
    rb = RawBoost.from_config({"algo": 5, "N_f": 3.0, "minF": 100, "SNRmax": 30})
    assert rb.algo == 5 and rb.params.N_f == 3 and rb.params.minF == 100.0 and rb.params.SNRmax == 30.0
    assert rb.params == RawBoost(5, N_f=3, minF=100, SNRmax=30).params
    with pytest.raises(UserError, match=r"^maxfreq\b"):
        RawBoost.from_config({"algo": 4, "maxfreq": 10})
    with pytest.raises(UserError, match="mapping"):
        RawBoost.from_config([("algo", 4)])
    assert RawBoostParams.names()[0] == "algo"


def test_reversed_gain_ranges_are_allowed():
    RawBoost(1, minG=3, maxG=-3)  # U(a, b) = a + (b - a) u, as published


def test_as_batch_transform_in_a_module_list():
    pipeline = torch.nn.Sequential(RawBoost(0))
    x = speechlike(2, 100)
    assert torch.equal(pipeline(x), x)


def test_forward_reuses_scratch_without_changing_results_and_pickles_without_it():
    import pickle

    rb = RawBoost(4)
    shapes = [(3, 5000), (1, 2000), (4, 6000), (2, 5000)]
    for i, (batch, time) in enumerate(shapes):
        x = speechlike(batch, time, seed=30 + i)
        expect = RawBoost(4).apply(x, RawBoost(4).draw(batch, time, gen(i)))  # fresh storage
        torch.testing.assert_close(rb(x, gen(i)), expect, rtol=0, atol=0)
    assert "_workspace" in rb.__dict__
    again = pickle.loads(pickle.dumps(rb))
    assert "_workspace" not in again.__dict__ and again.params == rb.params
