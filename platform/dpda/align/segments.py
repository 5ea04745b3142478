"""Segment layout of one flat gradient buffer, and the batched per-segment ops the rules need.

A model's trainable parameters are laid out back to back in one flat vector (one segment per
parameter tensor). Layer-wise alignment needs, per segment, three dot products (|g_o|^2, |g_a|^2,
g_o.g_a) and then a per-segment linear combination a_s g_o + b_s g_a. Both are done with a few
batched ops (``torch.segment_reduce`` over runs of small segments, ``torch.dot`` for big ones)
rather than a Python loop over tensors.

WHY the chunking: a product ``g_o * g_a`` over the whole buffer and a per-element coefficient
vector would each cost one more parameter-sized buffer (and ``repeat_interleave`` builds an
int64 index of the same length). Working through the buffer in chunks of about 1/16 of its
length bounds that transient memory at a small fraction of the parameter size, for the price
of a couple of dozen op launches per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, NamedTuple, Sequence

import torch

from dpda.errors import UserError

# Target number of chunks the buffer is cut into (bounds transient memory at ~1/16 of P).
_CHUNKS = 16
_MIN_CHUNK = 4096


class PairDots(NamedTuple):
    """Per-segment dot products of the two path gradients (float64, shape (S,))."""

    oo: torch.Tensor  # |g_orig|^2
    aa: torch.Tensor  # |g_aug|^2
    oa: torch.Tensor  # g_orig . g_aug

    def total(self) -> "PairDots":
        """Whole-model dots (shape (1,)): sums over segments."""
        return PairDots(*(d.sum().reshape(1) for d in self))


@dataclass(frozen=True)
class _Chunk:
    start: int  # element offset in the flat buffer
    stop: int
    seg_lo: int  # first segment index in this chunk
    seg_hi: int  # one past the last segment index
    lengths: tuple[int, ...]  # segment lengths inside the chunk


@dataclass(frozen=True)
class Segments:
    """Sizes (and names) of the consecutive segments of a flat buffer, one per parameter tensor."""

    sizes: tuple[int, ...]
    names: tuple[str, ...] = ()
    _chunks: tuple[_Chunk, ...] = field(init=False, repr=False, compare=False)
    _lengths_cache: dict = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        if not sizes or any(s <= 0 for s in sizes):
            raise UserError(f"segments: sizes must be a non-empty list of positive ints, got {self.sizes!r}")
        names = tuple(self.names) or tuple(f"segment{i}" for i in range(len(sizes)))
        if len(names) != len(sizes):
            raise UserError(f"segments: {len(names)} names for {len(sizes)} sizes")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_chunks", _plan_chunks(sizes))

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

    def _lengths(self, chunk: _Chunk, device: torch.device) -> torch.Tensor:
        key = (chunk.start, str(device))
        t = self._lengths_cache.get(key)
        if t is None:
            t = torch.tensor(chunk.lengths, dtype=torch.int64, device=device)
            self._lengths_cache[key] = t
        return t

    def check(self, *flats: torch.Tensor) -> None:
        """Raise if a buffer does not match this layout (caller error, cheap shape check only)."""
        for f in flats:
            if f.dim() != 1 or f.numel() != self.numel:
                raise UserError(
                    f"align: gradient buffer of shape {tuple(f.shape)} does not match the "
                    f"segment layout ({self.count} segments, {self.numel} elements)"
                )


def _plan_chunks(sizes: Sequence[int]) -> tuple[_Chunk, ...]:
    total = sum(sizes)
    target = max(_MIN_CHUNK, math.ceil(total / _CHUNKS))
    chunks: list[_Chunk] = []
    start = lo = 0
    run: list[int] = []
    offset = 0

    def flush(hi: int) -> None:
        nonlocal start, lo, run
        if run:
            chunks.append(_Chunk(start, start + sum(run), lo, hi, tuple(run)))
        start, lo, run = offset, hi, []

    for i, n in enumerate(sizes):
        if n >= target:  # a big tensor gets its own chunk (handled with dense ops, no temporaries)
            flush(i)
            chunks.append(_Chunk(offset, offset + n, i, i + 1, (n,)))
            offset += n
            start, lo = offset, i + 1
            continue
        run.append(n)
        offset += n
        if sum(run) >= target:
            flush(i + 1)
    flush(len(sizes))
    return tuple(chunks)


def segment_dots(g_orig: torch.Tensor, g_aug: torch.Tensor, segments: Segments) -> PairDots:
    """Per-segment |g_o|^2, |g_a|^2 and g_o.g_a as float64 vectors of shape (S,)."""
    segments.check(g_orig, g_aug)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for ch in segments._chunks:
        o = g_orig[ch.start : ch.stop]
        a = g_aug[ch.start : ch.stop]
        if ch.seg_hi - ch.seg_lo == 1:
            vals = (torch.dot(o, o), torch.dot(a, a), torch.dot(o, a))
            for p, v in zip(parts, vals):
                p.append(v.reshape(1))
        else:
            lengths = segments._lengths(ch, o.device)
            for p, (x, y) in zip(parts, ((o, o), (a, a), (o, a))):
                p.append(torch.segment_reduce(x * y, "sum", lengths=lengths))
    return PairDots(*(torch.cat(p).to(torch.float64) for p in parts))


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
    for ch in segments._chunks:
        sl = slice(ch.start, ch.stop)
        if ch.seg_hi - ch.seg_lo == 1:
            ca, cb = a[ch.seg_lo], b[ch.seg_lo]
        else:
            lengths = segments._lengths(ch, g_aug.device)
            n = ch.stop - ch.start
            ca = torch.repeat_interleave(a[ch.seg_lo : ch.seg_hi], lengths, output_size=n)
            cb = torch.repeat_interleave(b[ch.seg_lo : ch.seg_hi], lengths, output_size=n)
        _lincomb_(g_orig[sl], g_aug[sl], ca, cb, out[sl])
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
