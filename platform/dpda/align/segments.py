"""Segment layout of one flat gradient buffer, and the batched per-segment ops the rules need.

A model's trainable parameters are laid out back to back in one flat vector (one segment per
parameter tensor). Layer-wise alignment needs, per segment, three dot products (|g_o|^2, |g_a|^2,
g_o.g_a) and then a per-segment linear combination a_s g_o + b_s g_a. Both run as a fixed number
of batched ops that does not grow with the number of segments (no Python loop over tensors).

WHY blocks: the buffer is cut into blocks of ``BLOCK`` elements. A block lying inside one segment
("pure") is reduced or scaled as a row of a (blocks, BLOCK) view: one dense, fully parallel
reduction / broadcast per chunk of rows, whatever the segment sizes. The few blocks a segment
boundary cuts ("split", at most one per boundary, plus the buffer's partial last block) are
gathered once (at most segments x BLOCK elements, a transient that does not grow with the
parameter count) and handled with per-element segment ids. So
no kernel ever walks one huge segment serially (``segment_reduce``'s one-block-per-segment and
``repeat_interleave``'s one-warp-per-repeat CUDA kernels did, for segments of millions of
elements), and no parameter-sized index or coefficient vector is built.

WHY chunks: a product ``g_o * g_a`` over the whole buffer would cost one more parameter-sized
buffer; the rows are processed in at most ``_CHUNKS`` chunks, which bounds that transient at
about 1/16 of the parameters, for a few op launches per chunk. The number of chunks depends on
the buffer's length alone, so the op count of a step does not depend on how many tensors the
parameters are split into (tests/test_step_overhead.py checks this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple

import torch

from dpda.errors import UserError

BLOCK = 256  # elements per block: the unit of the dense per-segment reductions
_CHUNKS = 16  # target number of row chunks (bounds transient memory at ~1/16 of P)
_MIN_CHUNK_ROWS = 16  # small buffers: chunks of at least 4 Ki elements (a 16 KiB fp32 transient)


class PairDots(NamedTuple):
    """Per-segment dot products of the two path gradients (float64, shape (S,))."""

    oo: torch.Tensor  # |g_orig|^2
    aa: torch.Tensor  # |g_aug|^2
    oa: torch.Tensor  # g_orig . g_aug

    def total(self) -> "PairDots":
        """Whole-model dots (shape (1,)): sums over segments."""
        return PairDots(*(d.sum().reshape(1) for d in self))


@dataclass(frozen=True)
class _Plan:
    """Index tensors (on one device) of the block layout; built once per device."""

    rows: int  # full blocks (the rows of the (rows, BLOCK) view)
    chunks: tuple[tuple[int, int], ...]  # [row_lo, row_hi) per chunk
    row_seg: torch.Tensor  # (rows,) int64: the segment of each row's first element
    row_offsets: torch.Tensor  # (S+1,) int64: first row owned by each segment (split rows zeroed first)
    split_rows: torch.Tensor  # (K,) int64: full rows cut by a boundary (their block sums are zeroed)
    split_idx: torch.Tensor  # (V,) int64: buffer positions of the split blocks' elements, in order
    split_seg: torch.Tensor  # (V,) int64: their segments
    piece_offsets: torch.Tensor  # (n_pieces+1,) int64: runs of one segment inside split_idx
    head: torch.Tensor  # (S,) int64: a segment's first piece in split blocks (n_pieces: none)
    tail: torch.Tensor  # (S,) int64: its second piece (n_pieces: none)


@dataclass(frozen=True)
class Segments:
    """Sizes (and names) of the consecutive segments of a flat buffer, one per parameter tensor."""

    sizes: tuple[int, ...]
    names: tuple[str, ...] = ()
    _plans: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        if not sizes or any(s <= 0 for s in sizes):
            raise UserError(f"segments: sizes must be a non-empty list of positive ints, got {self.sizes!r}")
        names = tuple(self.names) or tuple(f"segment{i}" for i in range(len(sizes)))
        if len(names) != len(sizes):
            raise UserError(f"segments: {len(names)} names for {len(sizes)} sizes")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "names", names)

    @classmethod
    def single(cls, numel: int, name: str = "model") -> "Segments":
        """One segment covering the whole buffer."""
        return cls((numel,), (name,))

    @classmethod
    def from_parameters(cls, named: Iterable[tuple[str, torch.Tensor]]) -> "Segments":
        """One segment per tensor, in the given order."""
        pairs = list(named)
        return cls(tuple(p.numel() for _, p in pairs), tuple(n for n, _ in pairs))

    @property
    def count(self) -> int:
        return len(self.sizes)

    @property
    def numel(self) -> int:
        return sum(self.sizes)

    def plan(self, device: torch.device) -> _Plan:
        key = str(device)
        plan = self._plans.get(key)
        if plan is None:
            plan = _make_plan(self.sizes, torch.device(device))
            self._plans[key] = plan
        return plan

    def check(self, *flats: torch.Tensor) -> None:
        """Raise if a buffer does not match this layout (caller error, cheap shape check only)."""
        for f in flats:
            if f.dim() != 1 or f.numel() != self.numel:
                raise UserError(
                    f"align: gradient buffer of shape {tuple(f.shape)} does not match the "
                    f"segment layout ({self.count} segments, {self.numel} elements)"
                )


def _make_plan(sizes: tuple[int, ...], device: torch.device) -> _Plan:
    """The block layout of `sizes` (host integer work, once per layout and device)."""
    total = sum(sizes)
    n_seg = len(sizes)
    bounds = torch.tensor((0, *sizes), dtype=torch.int64).cumsum(0)  # (S+1,)
    rows = total // BLOCK
    per_chunk = max(_MIN_CHUNK_ROWS, math.ceil(rows / _CHUNKS))
    chunks = tuple((lo, min(lo + per_chunk, rows)) for lo in range(0, rows, per_chunk))
    starts = torch.arange(rows, dtype=torch.int64) * BLOCK
    row_seg = torch.searchsorted(bounds, starts, right=True) - 1
    inner = bounds[1:-1]
    cut = inner[inner % BLOCK != 0] // BLOCK
    split_full = torch.unique(cut[cut < rows])
    split_blocks = split_full.tolist() + ([rows] if total % BLOCK else [])
    if split_blocks:
        idx = (torch.tensor(split_blocks, dtype=torch.int64)[:, None] * BLOCK + torch.arange(BLOCK)).reshape(-1)
        split_idx = idx[idx < total]
    else:
        split_idx = torch.zeros(0, dtype=torch.int64)
    split_seg = torch.searchsorted(bounds, split_idx, right=True) - 1
    # runs of one segment in split_idx (consecutive positions of one segment, possibly across
    # two split blocks that touch: split a run where positions jump, so a piece is contiguous)
    if split_idx.numel():
        new = torch.ones(split_idx.numel(), dtype=torch.bool)
        new[1:] = (split_seg[1:] != split_seg[:-1]) | (split_idx[1:] != split_idx[:-1] + 1)
        first = torch.nonzero(new).reshape(-1)
        piece_lengths = torch.diff(torch.cat([first, torch.tensor([split_idx.numel()])]))
        piece_seg = split_seg[first]
    else:
        piece_lengths = torch.zeros(0, dtype=torch.int64)
        piece_seg = torch.zeros(0, dtype=torch.int64)
    n_pieces = piece_lengths.numel()
    head = torch.full((n_seg,), n_pieces, dtype=torch.int64)
    tail = torch.full((n_seg,), n_pieces, dtype=torch.int64)
    for i, s in enumerate(piece_seg.tolist()):  # at most two pieces per segment (its end blocks)
        if head[s] == n_pieces:
            head[s] = i
        else:
            assert tail[s] == n_pieces, "a segment has at most two pieces in split blocks"
            tail[s] = i
    # offsets, not lengths: segment_reduce checks lengths with two host syncs per call
    row_offsets = _offsets(torch.bincount(row_seg, minlength=n_seg))  # split rows stay counted, zeroed

    def dev(t: torch.Tensor) -> torch.Tensor:
        return t.to(device)

    return _Plan(rows, chunks, dev(row_seg), dev(row_offsets), dev(split_full), dev(split_idx), dev(split_seg),
                 dev(_offsets(piece_lengths)), dev(head), dev(tail))


def _offsets(lengths: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])


def segment_dots(g_orig: torch.Tensor, g_aug: torch.Tensor, segments: Segments) -> PairDots:
    """Per-segment |g_o|^2, |g_a|^2 and g_o.g_a as float64 vectors of shape (S,).

    Sums over at most BLOCK elements are in the buffer's dtype; everything above them is float64."""
    segments.check(g_orig, g_aug)
    plan = segments.plan(g_orig.device)
    dev = g_orig.device
    out = torch.zeros(3, segments.count, dtype=torch.float64, device=dev)
    if plan.rows:
        blk = torch.empty(3, plan.rows, dtype=g_orig.dtype, device=dev)
        o_rows = g_orig[: plan.rows * BLOCK].view(plan.rows, BLOCK)
        a_rows = g_aug[: plan.rows * BLOCK].view(plan.rows, BLOCK)
        for lo, hi in plan.chunks:
            o, a = o_rows[lo:hi], a_rows[lo:hi]
            torch.linalg.vector_norm(o, dim=1, out=blk[0, lo:hi])  # one read, no product buffer
            torch.linalg.vector_norm(a, dim=1, out=blk[1, lo:hi])
            torch.sum(o * a, 1, out=blk[2, lo:hi])
        blk64 = blk.to(torch.float64)
        blk64[:2].square_()
        blk64.index_fill_(1, plan.split_rows, 0.0)
        for k in range(3):  # 1-D segmented reductions (CUB's segmented reduce on CUDA)
            out[k] += torch.segment_reduce(blk64[k], "sum", offsets=plan.row_offsets)
    if plan.split_idx.numel():
        o = g_orig.index_select(0, plan.split_idx)
        a = g_aug.index_select(0, plan.split_idx)
        for k, (x, y) in enumerate(((o, o), (a, a), (o, a))):  # one product alive at a time
            # pieces are at most BLOCK long: summed in the buffer's dtype, then float64
            pieces = torch.segment_reduce(x * y, "sum", offsets=plan.piece_offsets).to(torch.float64)
            pieces = torch.nn.functional.pad(pieces, (0, 1))  # the "no piece" entry
            out[k] += pieces.index_select(0, plan.head) + pieces.index_select(0, plan.tail)
    return PairDots(out[0], out[1], out[2])


def combine_(
    g_orig: torch.Tensor,
    g_aug: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    segments: Segments,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Write a_s * g_orig + b_s * g_aug per segment into ``out`` (which may alias either input).

    ``a``/``b`` have shape (1,) (one coefficient for the whole model) or (S,) (per segment).
    """
    segments.check(g_orig, g_aug)
    if out is None:
        out = torch.empty_like(g_aug)
    dt = g_aug.dtype
    a = a.to(dt)
    b = b.to(dt)
    if a.numel() == 1:
        _lincomb_(g_orig, g_aug, a.reshape(()), b.reshape(()), out)
        return out
    if a.numel() != segments.count:
        raise UserError(f"align: {a.numel()} coefficients for {segments.count} segments")
    plan = segments.plan(g_aug.device)
    split = plan.split_idx.numel() > 0
    if split:  # read the split blocks before the row pass overwrites them (out may alias)
        o_s = g_orig.index_select(0, plan.split_idx)
        g_s = g_aug.index_select(0, plan.split_idx)
    if plan.rows:
        n = plan.rows * BLOCK
        ca, cb = a.index_select(0, plan.row_seg)[:, None], b.index_select(0, plan.row_seg)[:, None]
        o_rows, g_rows = g_orig[:n].view(plan.rows, BLOCK), g_aug[:n].view(plan.rows, BLOCK)
        out_rows = out[:n].view(plan.rows, BLOCK)
        for lo, hi in plan.chunks:
            _lincomb_(o_rows[lo:hi], g_rows[lo:hi], ca[lo:hi], cb[lo:hi], out_rows[lo:hi])
    if split:
        o_s.mul_(a.index_select(0, plan.split_seg)).addcmul_(b.index_select(0, plan.split_seg), g_s)
        out.index_copy_(0, plan.split_idx, o_s)
    return out


def _lincomb_(o: torch.Tensor, g: torch.Tensor, ca: torch.Tensor, cb: torch.Tensor, out: torch.Tensor) -> None:
    """out = ca*o + cb*g without a full-size temporary, whatever ``out`` aliases."""
    if out.data_ptr() == o.data_ptr():
        out.mul_(ca).addcmul_(g, cb)
    else:
        if out.data_ptr() == g.data_ptr():
            out.mul_(cb)
        else:
            torch.mul(g, cb, out=out)
        out.addcmul_(o, ca)
