"""Deterministic RawBoost operations on batched tensors, given every random draw explicitly.

Nothing here draws random numbers: callers pass FIR coefficients, impulse positions and factors,
noise and SNRs. That keeps each operation checkable against an independent implementation
(SciPy's firwin/lfilter in the tests) and lets `RawBoost` own the sampling.

Shapes: waveforms are `(..., time)`; per-utterance FIRs are `(..., taps)` and broadcast against
the waveform's leading dimensions. Filtering is FFT overlap-save on the input's device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# freqz's default grid: 512 frequencies k*pi/512, k = 0..511 (Nyquist excluded). The published
# code takes the bank's peak magnitude response on this grid, so we do too.
PEAK_GRID_POINTS = 512
# Smallest overlap-save block. On the CPU torch builds a fresh MKL plan per FFT call (~25 ns per
# point of the block), and smaller blocks keep the working set in cache; 2048 (4x the default
# 491-tap banks) measured best against 4096 side by side (benchmarks/bench_rawboost.py).
MIN_BLOCK = 2048
EDGE_HZ = 1e-3  # published clamp: band edges stay this far inside (0, fs/2)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _design_dtype(device: torch.device) -> torch.dtype:
    """Filter design in float64 (the firwin DC scaling divides by a possibly small sum)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _work_dtype(x: Tensor) -> torch.dtype:
    """FFTs need float32/float64; half precision inputs are processed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def normalise_if_clipping(y: Tensor) -> Tensor:
    """Divide each utterance by its peak only if the peak exceeds 1 (published `normWav(y, 0)`).

    Silent inputs stay zero instead of becoming NaN: the divisor is 1 unless the peak is > 1.
    """
    return y / _clip_divisor(y)


def _clip_divisor(y: Tensor) -> Tensor:
    # amax and amin separately: no |y| temporary, and much faster than aminmax on CPU.
    return _divisor(torch.maximum(y.amax(dim=-1, keepdim=True), -y.amin(dim=-1, keepdim=True)))


def _divisor(peak: Tensor) -> Tensor:
    """The published normalisation divides by the peak only if it exceeds 1."""
    return torch.where(peak > 1, peak, torch.ones_like(peak))


def band_edges(centre_hz: Tensor, width_hz: Tensor, sample_rate: float) -> tuple[Tensor, Tensor]:
    """Stop band [fc - bw/2, fc + bw/2] clamped inside (0, fs/2) as in the published code."""
    low = centre_hz - width_hz / 2
    high = centre_hz + width_hz / 2
    low = torch.where(low <= 0, torch.full_like(low, EDGE_HZ), low)
    nyq = sample_rate / 2
    high = torch.where(high >= nyq, torch.full_like(high, nyq - EDGE_HZ), high)
    return low, high


def firwin_bandstop(taps: Tensor, low_hz: Tensor, high_hz: Tensor, sample_rate: float, length: int) -> Tensor:
    """Hamming-window band-stop FIRs, each equal to `scipy.signal.firwin(taps, [low, high],
    window='hamming', pass_zero='bandstop', fs=sample_rate)`, zero-padded symmetrically to `length`.

    `taps` (odd integers <= length, odd length) and the edges share a shape `(...)`; returns
    `(..., length)`. Centring every filter in the common length keeps all of them with the same
    delay, so filters of different tap counts can be batched without losing alignment.
    """
    if length % 2 == 0:
        raise ValueError(f"length must be odd, got {length}")
    dtype = low_hz.dtype if low_hz.is_floating_point() else _design_dtype(low_hz.device)
    nyq = sample_rate / 2
    f1 = (low_hz.to(dtype) / nyq).unsqueeze(-1)
    f2 = (high_hz.to(dtype) / nyq).unsqueeze(-1)
    m = torch.arange(length, dtype=dtype, device=low_hz.device) - (length - 1) / 2  # integers
    half = ((taps.to(dtype) - 1) / 2).unsqueeze(-1)
    # Ideal band-stop = all-pass - low-pass(f2) + low-pass(f1) = sinc(m) - f2 sinc(f2 m) + f1 sinc(f1 m)
    # with sinc(x) = sin(pi x)/(pi x); at integer m, sinc(m) is a unit impulse, which leaves two sines.
    safe_m = torch.where(m == 0, torch.ones_like(m), m)
    h = (torch.sin(math.pi * f1 * m) - torch.sin(math.pi * f2 * m)) / (math.pi * safe_m)
    h = torch.where(m == 0, 1 - f2 + f1, h)
    # Symmetric Hamming window written around the centre: 0.54 + 0.46 cos(2 pi m / (taps - 1)).
    window = 0.54 + 0.46 * torch.cos(2 * math.pi * m / (2 * half).clamp_min(1))
    h = h * window * (m.abs() <= half)
    # firwin scales for unity gain at DC (the first pass band starts at 0).
    dc = h.sum(dim=-1, keepdim=True)
    return h / torch.where(dc == 0, torch.ones_like(dc), dc)


def notch_bank(
    centre_hz: Tensor,
    width_hz: Tensor,
    taps: Tensor,
    gain_db: Tensor,
    sample_rate: float,
    band_length: int | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """One notch-filter bank per leading index: the band-stop filters of the last axis convolved into
    one FIR, scaled so its peak magnitude response (freqz grid) is 10^(gain_db/20).

    `centre_hz`, `width_hz`, `taps`: `(..., nBands)`; `gain_db`: `(...)`. Tap counts must be odd.
    Band filters are centred in `band_length` taps (default: the largest drawn), so the bank has
    `nBands * (band_length - 1) + 1` taps with its true response centred: filtering it with
    `fir_filter` is aligned exactly like the unpadded bank.

    The band filters are always designed in float64 (firwin's DC scaling divides by a sum that
    wide stop bands make small); `dtype` (default: float64, float32 on MPS) is the precision of
    the bank itself. RawBoost's draws use float32: half the cost, ~1e-7 relative error.
    """
    design = _design_dtype(centre_hz.device)
    dtype = design if dtype is None else dtype
    if band_length is None:
        band_length = (int(taps.max()) | 1) if taps.numel() else 1
    low, high = band_edges(centre_hz.to(design), width_hz.to(design), sample_rate)
    bands = firwin_bandstop(taps, low, high, sample_rate, band_length).to(dtype)
    n_bands = bands.shape[-2]
    length = n_bands * (band_length - 1) + 1
    n_fft = _next_pow2(length)
    # Convolving the bands = multiplying their spectra (n_fft >= length, so no wrap-around).
    if n_bands:
        band_spectra = torch.fft.rfft(bands, n=n_fft)
        spectrum = band_spectra[..., 0, :].clone()
        for i in range(1, n_bands):  # a loop of in-place products beats complex prod() by far on CPU
            spectrum.mul_(band_spectra[..., i, :])
    else:  # no bands: an all-pass bank, only the gain applies
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        spectrum = torch.ones(*bands.shape[:-2], n_fft // 2 + 1, dtype=complex_dtype, device=bands.device)
    bank = torch.fft.irfft(spectrum, n=n_fft)[..., :length]
    grid = 2 * PEAK_GRID_POINTS
    if n_fft >= grid:  # the freqz grid is every (n_fft/grid)-th bin
        on_grid = spectrum[..., : n_fft // 2 : n_fft // grid]
    else:
        on_grid = torch.fft.rfft(bank, n=grid)[..., :PEAK_GRID_POINTS]
    # max |H|^2 first, one square root per bank: complex abs (a hypot per bin) is several times slower.
    peak = (on_grid.real.square() + on_grid.imag.square()).amax(dim=-1).sqrt()
    scale = torch.pow(10.0, gain_db.to(dtype) / 20) / peak.clamp_min(torch.finfo(dtype).tiny)
    return bank * scale.unsqueeze(-1)


def _block_size(time: int, taps: int) -> int:
    """Overlap-save block: >= 4 filter lengths for efficiency, but no larger than one block needs."""
    block = max(MIN_BLOCK, _next_pow2(4 * taps))
    return min(block, _next_pow2(time + taps - 1))


def fir_filter(x: Tensor, fir: Tensor, extra_advance: int = 0) -> Tensor:
    """Aligned FIR filtering: y[t] = sum_k fir[k] x[t + (taps-1)//2 + extra_advance - k], same
    length as x.

    This is `lfilter(fir, 1, x)` advanced by (taps-1)//2 samples (the group delay of a symmetric
    odd-length filter), with the signal taken as zero beyond its ends. `extra_advance=1` is the
    published `filterFIR`, which drops (taps+1)/2 samples: one past the group delay (the
    `fir_alignment: published` switch). `fir`: `(..., taps)`, broadcast against `x`'s leading
    dimensions; computed by FFT overlap-save.
    """
    return _filter_powers(x, fir.unsqueeze(-2), extra_advance)


def _filter_powers(x: Tensor, firs: Tensor, extra_advance: int = 0) -> Tensor:
    """sum_i fir_i * x^(i+1) for `firs` `(..., K, taps)`: one set of blocks, K forward FFTs of the
    powers and a single inverse FFT (filtering is linear, so the terms add in the spectrum).

    Works in place on a few buffers: on a memory-bound CPU every pass over the batch counts.
    """
    time = x.shape[-1]
    dtype = _work_dtype(x)
    if time == 0:
        return x.to(dtype)
    n_terms, taps = firs.shape[-2], firs.shape[-1]
    block = _block_size(time, taps)
    frames = _frames(x, dtype, taps, block, (taps - 1) // 2 + extra_advance)
    fir_spectra = torch.fft.rfft(firs.to(dtype), n=block).unsqueeze(-2)  # (..., K, 1, bins)
    total = torch.fft.rfft(frames, n=block).mul_(fir_spectra[..., 0, :, :])
    if n_terms > 1:
        # Powers of the blocks are blocks of the powers: the zero padding stays zero.
        power = frames * frames
        for i in range(1, n_terms):
            total.addcmul_(torch.fft.rfft(power, n=block), fir_spectra[..., i, :, :])
            if i + 1 < n_terms:
                power.mul_(frames)
    return _assemble(total, taps, block, time)


def _frames(x: Tensor, dtype: torch.dtype, taps: int, block: int, advance: int) -> Tensor:
    """Overlapping blocks `(..., n_blocks, block)` of `x` in `dtype` such that block j's valid
    circular-convolution outputs are the outputs j*step .. j*step + step - 1 advanced by `advance`
    samples (step = block - taps + 1), i.e. block j holds samples j*step - left .. with zeros
    beyond the ends (left = taps - 1 - advance, -1 for a one-tap filter advanced by one).
    Interior blocks are one strided copy straight from each signal (no padded copy: on a
    memory-bound CPU every pass over the batch counts); the few edge blocks are filled piecewise."""
    time = x.shape[-1]
    step = block - taps + 1
    n_blocks = -(-time // step)
    left = taps - 1 - advance
    frames = x.new_empty((*x.shape[:-1], n_blocks, block), dtype=dtype)
    first = -(-left // step)  # first block starting inside the signal
    last = (time + left - block) // step  # last block ending inside it
    if last >= first:
        start = first * step - left
        frames[..., first:last + 1, :] = x[..., start:].unfold(-1, block, step)[..., : last + 1 - first, :]
    for j in [*range(0, min(first, n_blocks)), *range(max(last + 1, first), n_blocks)]:
        lo = j * step - left
        a, b = max(lo, 0), min(lo + block, time)
        frames[..., j, :].zero_()
        frames[..., j, a - lo:b - lo] = x[..., a:b]
    return frames


def _assemble(spectra: Tensor, taps: int, block: int, time: int) -> Tensor:
    """Inverse of the overlap-save blocks: keep each block's valid tail, written into one
    contiguous `(..., time)` tensor."""
    y = torch.fft.irfft(spectra, n=block)[..., taps - 1:]  # (..., n_blocks, step)
    step = block - taps + 1
    full = time // step
    out = y.new_empty((*y.shape[:-2], time))
    out[..., : full * step].unflatten(-1, (full, step)).copy_(y[..., :full, :])
    if full * step < time:
        out[..., full * step:] = y[..., full, : time - full * step]
    return out


def lnl(x: Tensor, banks: Tensor, extra_advance: int = 0) -> Tensor:
    """Linear and non-linear convolutive noise: sum_i bank_i(x^i), mean removed, peak-normalised
    if above 1. `banks`: `(..., N_f, taps)`, bank i (0-based) filters x^(i+1); `extra_advance`:
    see `fir_filter`."""
    y = _filter_powers(x, banks, extra_advance)
    # (y - mean) / divisor in one pass; the peak of y - mean is read off y's extremes.
    mean = y.mean(dim=-1, keepdim=True)
    peak = torch.maximum(y.amax(dim=-1, keepdim=True) - mean, mean - y.amin(dim=-1, keepdim=True))
    scale = 1 / _divisor(peak)
    return torch.addcmul(-mean * scale, y, scale, out=y).to(x.dtype)


def isd(x: Tensor, positions: Tensor, factors: Tensor, g_sd: float) -> Tensor:
    """Impulsive signal-dependent noise: y[p] = x[p] + g_sd * x[p] * factor for each impulse
    position p, elsewhere y = x; peak-normalised if above 1.

    `positions` `(..., k)` int64: distinct sample indices per row, -1 for unused slots; `factors`
    `(..., k)`: the (2u1-1)(2u2-1) draws. Sparse because only up to P% of samples are hit.
    """
    return isd_(x.to(_work_dtype(x), copy=True), positions, factors, g_sd).to(x.dtype)


def isd_(y: Tensor, positions: Tensor, factors: Tensor, g_sd: float) -> Tensor:
    """In-place `isd` on a float32/float64 tensor the caller owns (saves a copy in series)."""
    used = positions >= 0
    # y[p] * (1 + g_sd * factor) in one scatter; unused slots point at sample 0 with factor 1.
    gain = torch.where(used, factors.to(y.dtype) * g_sd + 1, 1.0)
    y.scatter_reduce_(-1, positions.clamp_min(0), gain, "prod")
    return y.div_(_clip_divisor(y))


def ssi(x: Tensor, noise: Tensor, bank: Tensor, snr_db: Tensor, out: Tensor | None = None,
        extra_advance: int = 0) -> Tensor:
    """Stationary signal-independent noise: `noise` coloured by `bank` (`(..., taps)`), scaled so
    that 10 log10(|x|^2 / |noise|^2) = snr_db for each utterance, added to x (no normalisation).

    The published peak normalisation of the noise is skipped: the energy scaling undoes it exactly.
    With `out`, the result is written there (see `add_at_snr`); `extra_advance`: see `fir_filter`.
    """
    return add_at_snr(x, fir_filter(noise.to(_work_dtype(x)), bank, extra_advance), snr_db, out=out)


def add_at_snr(x: Tensor, coloured: Tensor, snr_db: Tensor, out: Tensor | None = None) -> Tensor:
    """x + coloured noise scaled to `snr_db` (`(...)`) against x's energy, in x's dtype
    (written into `out` if given: saves a copy when the caller assembles a batch)."""
    work = x.to(_work_dtype(x))
    coloured = coloured.to(work.dtype)
    tiny = torch.finfo(work.dtype).tiny
    noise_norm = torch.linalg.vector_norm(coloured, dim=-1, keepdim=True).clamp_min(tiny)
    signal_norm = torch.linalg.vector_norm(work, dim=-1, keepdim=True)
    gain = signal_norm / noise_norm / torch.pow(10.0, snr_db.to(work.dtype).unsqueeze(-1) / 20)
    if out is not None and out.dtype == work.dtype:
        return torch.addcmul(work, coloured, gain, out=out)
    y = torch.addcmul(work, coloured, gain).to(x.dtype)
    return y if out is None else out.copy_(y)


def parallel_lnl_isd(x: Tensor, banks: Tensor, positions: Tensor, factors: Tensor, g_sd: float,
                     extra_advance: int = 0) -> Tensor:
    """Algorithm 8: LnL and ISD applied to the same input, summed, peak-normalised if above 1."""
    work = x.to(_work_dtype(x))
    summed = lnl(work, banks, extra_advance) + isd(work, positions, factors, g_sd)
    return normalise_if_clipping(summed).to(x.dtype)
