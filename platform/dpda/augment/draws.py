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

from dpda.augment import functional
from dpda.augment.params import RawBoostParams


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


# Samples per chunk of rows on the CPU (a few 64k-sample utterances: fits the L2 cache); the draws'
# bookkeeping and RawBoost.apply both work through `rows_per_chunk`.
CPU_CHUNK_SAMPLES = 1 << 18


def rows_per_chunk(device: torch.device, batch: int, time: int) -> int:
    """Rows processed at a time: the whole batch on an accelerator, a cache-sized chunk (at
    least one row) on the CPU."""
    return batch if device.type != "cpu" else max(1, CPU_CHUNK_SAMPLES // max(time, 1))


class Workspace:
    """Scratch tensors reused across `RawBoost.forward` calls (the noise, the ISD claim table).

    A fresh multi-megabyte tensor per call is fresh memory from the OS: its page faults cost about
    as much as the FFTs of a 64k-sample utterance. Only for draws that never leave `forward`:
    `RawBoost.draw` returns tensors of their own. Not for concurrent calls from several threads.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """An uninitialised tensor of `shape`, backed by storage kept for `name`."""
        numel = math.prod(shape)
        held = self._tensors.get(name)
        if held is None or held.dtype != dtype or held.device != device or held.numel() < numel:
            held = torch.empty(numel, dtype=dtype, device=device)
            self._tensors[name] = held
        return held[:numel].view(shape)


def _scratch(workspace: Workspace | None, name: str, shape: tuple[int, ...], dtype: torch.dtype,
             device: torch.device) -> Tensor:
    if workspace is None:
        return torch.empty(shape, dtype=dtype, device=device)
    return workspace.take(name, shape, dtype, device)


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
    banks = functional.notch_bank(centre, width, taps, gain, p.sample_rate, band_length=p.max_band_taps,
                          dtype=torch.float32)
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
             device: torch.device, chunk_rows: int | None = None,
             workspace: Workspace | None = None) -> ISDDraws:
    """beta ~ U(0, P); floor(time * beta / 100) distinct positions; a factor per position.

    Distinct positions follow the sequential "draw i.i.d. positions until n are distinct" process,
    which makes every size-n subset equally likely. Each round draws, for every row still short,
    a few more positions than it misses (a ragged flat batch: a row missing 10 positions does not
    draw as many as one missing 6,000), keeps the first claim of each free position in draw order
    up to the missing count, and discards the rest. That costs ~n random integers per utterance
    instead of `time` random keys (the CPU generator costs ~7 ns a number, so keys for every
    sample would dominate RawBoost), and one host sync per round; the margin makes a second round
    rare. Each kept position takes the factor drawn with it; factors are i.i.d. and independent
    of the positions, as published.

    Random numbers are drawn for the whole batch; the bookkeeping runs `chunk_rows` rows at a time
    (default: all on accelerators, a few on the CPU) so its random accesses stay in cache. The
    result does not depend on `chunk_rows`.
    """
    where = _draw_device(gen, device)
    beta = _uniform(0.0, p.P, (batch,), gen, where)
    most = math.floor(time * p.P / 100)
    count = torch.floor(time * beta / 100).long().clamp_max(most)
    width = int(count.max()) if batch else 0
    positions = torch.full((batch, width), -1, dtype=torch.long, device=where)
    factors = torch.zeros((batch, width), device=where)
    if width == 0:
        return ISDDraws(positions.to(device), factors.to(device))
    if chunk_rows is None:
        chunk_rows = rows_per_chunk(where, batch, time)
    # claim[b, t] = id (row-local draw index) of the draw holding position t of row b (`free` if
    # none); column `time` is a sink for released claims. int16 when a row never draws 32k
    # positions in a round (the default settings): half the memory to fill and to hit at random.
    per_row = width + math.ceil(1.5 * width * width / time) + 8  # bound on one row's draws per round
    id_dtype = torch.int16 if per_row < torch.iinfo(torch.int16).max else torch.int32
    claim = _scratch(workspace, "isd_claim", (batch, time + 1), id_dtype, where).fill_(torch.iinfo(id_dtype).max)
    held = torch.zeros_like(count)
    missing = count
    row_ids = torch.arange(batch, device=where)
    while True:
        # Expected repeats among n draws when h positions are held: ~n (h + n/2) / time.
        extra = torch.ceil(1.5 * missing * (held + missing / 2) / time).long() + 8
        draws_per_row = torch.where(missing > 0, missing + extra, 0)
        ends = torch.cumsum(draws_per_row, dim=0)
        ends_host = ends.tolist()  # the round's one host sync
        n_draws = ends_host[-1]
        if n_draws == 0:
            break
        rows = torch.repeat_interleave(row_ids, draws_per_row, output_size=n_draws)
        pos = torch.randint(0, time, (n_draws,), generator=gen, device=where)
        u = torch.rand((2, n_draws), generator=gen, device=where)
        starts = ends - draws_per_row  # each row's first draw in the flat batch
        ids = (torch.arange(n_draws, device=where) - starts.index_select(0, rows)).to(id_dtype)
        rank = torch.empty(n_draws, dtype=torch.long, device=where)
        accept = torch.empty(n_draws, dtype=torch.bool, device=where)
        for first_row in range(0, batch, chunk_rows):
            rows_here = slice(first_row, first_row + chunk_rows)
            lo = ends_host[first_row - 1] if first_row else 0
            hi = ends_host[min(first_row + chunk_rows, batch) - 1]
            if lo == hi:
                continue
            rank[lo:hi], accept[lo:hi] = _claim(
                claim[rows_here], rows[lo:hi] - first_row, pos[lo:hi], ids[lo:hi],
                starts[rows_here] - lo, missing[rows_here])
        # index_select/index_copy_ with one index: several times faster than boolean-mask indexing.
        kept = accept.nonzero().squeeze(1)
        kept_rows = rows.index_select(0, kept)
        slots = held.index_select(0, kept_rows) + rank.index_select(0, kept)
        target = kept_rows * width + slots
        positions.view(-1).index_copy_(0, target, pos.index_select(0, kept))
        u = u.index_select(1, kept)
        factors.view(-1).index_copy_(0, target, (2 * u[0] - 1) * (2 * u[1] - 1))
        taken = torch.bincount(kept_rows, minlength=batch)
        missing = missing - taken
        held = held + taken
    return ISDDraws(positions.to(device), factors.to(device))


def _claim(claim: Tensor, rows: Tensor, pos: Tensor, ids: Tensor, starts: Tensor,
           missing: Tensor) -> tuple[Tensor, Tensor]:
    """One round of the sequential process on some rows (updates `claim` `(rows, time + 1)` in
    place): accept the earliest draw of each free position, in draw order within its row, until
    the row's `missing` are accepted. `rows` are 0-based within `claim` and sorted; row r's draws
    start at index `starts[r]`; `ids` number each row's draws in order. Held positions are never
    free, so whatever id an earlier round left there does not matter. Returns each draw's 0-based
    rank among its row's first claims, and the accept mask."""
    free = torch.iinfo(claim.dtype).max
    width = claim.shape[1]
    flat_claim = claim.view(-1)
    flat = rows * width + pos
    was_free = flat_claim.index_select(0, flat) == free
    flat_claim.scatter_reduce_(0, flat, ids, "amin")  # earliest draw wins a repeated position
    first = was_free & (flat_claim.index_select(0, flat) == ids)
    running = torch.cumsum(first, dim=0)
    before_row = torch.cat([running.new_zeros(1), running]).index_select(0, starts)
    rank = running - before_row.index_select(0, rows)  # 1-based rank of each first claim in its row
    accept = first & (rank <= missing.index_select(0, rows))
    # Claims past the missing count never happened in the sequential process: release them.
    sink = rows * width + (width - 1)
    flat_claim.index_fill_(0, torch.where(first & ~accept, flat, sink), free)
    return rank - 1, accept


def draw_ssi(p: RawBoostParams, batch: int, time: int, gen: torch.Generator | None,
             device: torch.device, workspace: Workspace | None = None) -> SSIDraws:
    """White noise, one colouring bank with the (unbiased) gain range, SNR ~ U(SNRmin, SNRmax)."""
    where = _draw_device(gen, device)
    noise = _scratch(workspace, "ssi_noise", (batch, time), torch.get_default_dtype(), where).normal_(generator=gen)
    gain = torch.tensor([p.minG], dtype=torch.float64), torch.tensor([p.maxG], dtype=torch.float64)
    notch = draw_banks(p, batch, gain[0], gain[1], gen, device)
    snr = _uniform(p.SNRmin, p.SNRmax, (batch,), gen, where)
    return SSIDraws(noise.to(device), notch.banks[:, 0], snr.to(device), notch)
