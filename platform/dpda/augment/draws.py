"""Random draws for RawBoost, one independent set per utterance, from an explicit torch.Generator.

Each `draw_*` returns the explicit inputs of the matching `functional` operation, so the module is
"draw, then apply" and tests can replay or hand-craft draws. Draws are made on the generator's
device (or `device` without a generator) and moved to `device`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from dpda.augment import functional as Fn
from dpda.augment.params import RawBoostParams

# Samples per chunk of rows for CPU bookkeeping (a few 64k-sample utterances: fits the L2 cache).
CPU_CHUNK_SAMPLES = 1 << 18


class _Rows:
    """Row selection over every tensor field (sub-batches must see exactly their own draws)."""

    def select(self, rows: slice):
        return type(self)(**{f.name: _pick(getattr(self, f.name), rows) for f in fields(self)})


def _pick(value, rows: slice):
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value[rows]
    return value.select(rows)


@dataclass
class NotchDraws(_Rows):
    """Band parameters behind a set of notch banks (kept for inspection and tests)."""

    centre_hz: Tensor  # (batch, K, nBands)
    width_hz: Tensor  # (batch, K, nBands)
    taps: Tensor  # (batch, K, nBands) odd tap counts
    gain_db: Tensor  # (batch, K)
    banks: Tensor  # (batch, K, taps) the designed FIRs


@dataclass
class LnLDraws(_Rows):
    banks: Tensor  # (batch, N_f, taps) FIR per utterance and power term
    notch: NotchDraws


@dataclass
class ISDDraws(_Rows):
    positions: Tensor  # (batch, k) int64 distinct sample indices per row; -1 = unused slot
    factors: Tensor  # (batch, k) (2u1-1)(2u2-1) for each position

    def mask(self, time: int) -> Tensor:
        """Dense (batch, time) bool mask of the impulse positions (for inspection and tests)."""
        hit = torch.zeros(self.positions.shape[0], time + 1, dtype=torch.bool, device=self.positions.device)
        hit.scatter_(1, torch.where(self.positions < 0, time, self.positions), True)
        return hit[:, :time]


@dataclass
class SSIDraws(_Rows):
    noise: Tensor  # (batch, time) white Gaussian noise
    bank: Tensor  # (batch, taps) colouring notch bank
    snr_db: Tensor  # (batch,)
    notch: NotchDraws


@dataclass
class RawBoostDraws(_Rows):
    """Everything one RawBoost call draws; parts the algorithm does not use are None."""

    lnl: LnLDraws | None = None
    isd: ISDDraws | None = None
    ssi: SSIDraws | None = None


def _uniform(lo: Tensor | float, hi: Tensor | float, shape: tuple[int, ...], gen: torch.Generator | None,
             device: torch.device) -> Tensor:
    """U(lo, hi) as lo + (hi - lo) u, the published form (also defined for hi < lo)."""
    u = torch.rand(shape, generator=gen, device=device, dtype=torch.float64)
    return lo + (hi - lo) * u


def _draw_device(gen: torch.Generator | None, device: torch.device) -> torch.device:
    return gen.device if gen is not None else device


def draw_banks(p: RawBoostParams, batch: int, gain_lo: Tensor, gain_hi: Tensor,
               gen: torch.Generator | None, device: torch.device) -> NotchDraws:
    """Notch banks `(batch, K, taps)` for K = len(gain_lo) gain ranges; every utterance and bank draws
    its own centres, widths, tap counts and gain."""
    where = _draw_device(gen, device)
    k = gain_lo.shape[0]
    shape = (batch, k, p.nBands)
    centre = _uniform(p.minF, p.maxF, shape, gen, where)
    width = _uniform(p.minBW, p.maxBW, shape, gen, where)
    # Published: int(U(minCoeff, maxCoeff)), then +1 if even.
    taps = torch.floor(_uniform(float(p.minCoeff), float(p.maxCoeff), shape, gen, where)).long() | 1
    gain = _uniform(gain_lo.to(where), gain_hi.to(where), (batch, k), gen, where)
    centre, width, taps, gain = centre.to(device), width.to(device), taps.to(device), gain.to(device)
    banks = Fn.notch_bank(centre, width, taps, gain, p.sample_rate, band_length=p.max_band_taps)
    return NotchDraws(centre, width, taps, gain, banks)


def draw_lnl(p: RawBoostParams, batch: int, gen: torch.Generator | None, device: torch.device) -> LnLDraws:
    """Banks for the N_f power terms; terms 2..N_f use the gain range lowered by the biases."""
    lo = torch.full((p.N_f,), p.minG, dtype=torch.float64)
    hi = torch.full((p.N_f,), p.maxG, dtype=torch.float64)
    lo[1:] -= p.minBiasLinNonLin
    hi[1:] -= p.maxBiasLinNonLin
    notch = draw_banks(p, batch, lo, hi, gen, device)
    return LnLDraws(notch.banks, notch)


def draw_isd(p: RawBoostParams, batch: int, time: int, gen: torch.Generator | None,
             device: torch.device, chunk_rows: int | None = None) -> ISDDraws:
    """beta ~ U(0, P); floor(time * beta / 100) distinct positions; a factor per position.

    Distinct positions follow the sequential "draw i.i.d. positions until n are distinct" process,
    which makes every size-n subset equally likely: each round draws a few more positions than are
    missing, keeps the first claim of each free position in draw order up to the missing count, and
    discards the rest. That costs ~n random integers rather than sorting `time` random keys per
    utterance (a sort would dominate RawBoost). Each kept position takes the factor drawn with it;
    factors are i.i.d. and independent of the positions, as published.

    Random numbers are drawn for the whole batch; the bookkeeping runs `chunk_rows` rows at a time
    (default: all on accelerators, a few on the CPU) so its random accesses stay in cache. The
    result does not depend on `chunk_rows`.
    """
    where = _draw_device(gen, device)
    beta = _uniform(0.0, p.P, (batch,), gen, where)
    most = math.floor(time * p.P / 100)
    count = torch.floor(time * beta / 100).long().clamp_max(most)
    if chunk_rows is None:
        chunk_rows = batch if where.type != "cpu" else max(1, CPU_CHUNK_SAMPLES // max(time, 1))
    # claim[b, t] = id of the draw holding position t (`free` if none); column `time` is a sink.
    free = torch.iinfo(torch.int32).max
    claim = torch.full((batch, time + 1), free, dtype=torch.int32, device=where)
    missing = count
    held = torch.zeros_like(count)
    issued = 0
    kept_pos, kept_val = [], []
    while batch:
        need = int(missing.max())
        if need <= 0:
            break
        # Expected repeats among `need` draws when `held + j` positions are taken: ~need*(held+need/2)/T.
        busy = int(held.max()) + need / 2
        n_draws = need + math.ceil(1.5 * need * busy / time) + 8
        pos = torch.randint(0, time, (batch, n_draws), generator=gen, device=where)
        u = torch.rand((batch, 2, n_draws), generator=gen, device=where)
        ids = torch.arange(issued + 1, issued + n_draws + 1, dtype=torch.int32, device=where)
        issued += n_draws
        accept = torch.empty(batch, n_draws, dtype=torch.bool, device=where)
        for start in range(0, batch, chunk_rows):
            rows = slice(start, start + chunk_rows)
            accept[rows] = _claim(claim[rows], pos[rows], ids, missing[rows], time, free)
        kept_pos.append(torch.where(accept, pos, -1))
        kept_val.append((2 * u[:, 0] - 1) * (2 * u[:, 1] - 1))
        taken = accept.sum(dim=1)
        missing = missing - taken
        held = held + taken
    if not kept_pos:
        empty = torch.zeros(batch, 0, device=device)
        return ISDDraws(empty.long(), empty)
    return ISDDraws(torch.cat(kept_pos, dim=1).to(device), torch.cat(kept_val, dim=1).to(device))


def _claim(claim: Tensor, pos: Tensor, ids: Tensor, missing: Tensor, time: int, free: int) -> Tensor:
    """One round of the sequential process on some rows (updates `claim` in place): accept the
    earliest draw of each free position, in draw order, until `missing` are accepted."""
    ids = ids.expand_as(pos)
    was_free = claim.gather(1, pos) == free
    claim.scatter_reduce_(1, pos, ids, "amin")  # earliest draw wins a repeated position
    first = was_free & (claim.gather(1, pos) == ids)
    accept = first & (torch.cumsum(first, dim=1) <= missing.unsqueeze(1))
    # Claims past the missing count never happened in the sequential process: release them.
    claim.scatter_(1, torch.where(first & ~accept, pos, time), free)
    return accept


def draw_ssi(p: RawBoostParams, batch: int, time: int, gen: torch.Generator | None,
             device: torch.device) -> SSIDraws:
    """White noise, one colouring bank with the (unbiased) gain range, SNR ~ U(SNRmin, SNRmax)."""
    where = _draw_device(gen, device)
    noise = torch.randn((batch, time), generator=gen, device=where)
    gain = torch.tensor([p.minG], dtype=torch.float64), torch.tensor([p.maxG], dtype=torch.float64)
    notch = draw_banks(p, batch, gain[0], gain[1], gen, device)
    snr = _uniform(p.SNRmin, p.SNRmax, (batch,), gen, where)
    return SSIDraws(noise.to(device), notch.banks[:, 0], snr.to(device), notch)
