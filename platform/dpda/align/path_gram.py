"""The Gram matrices of P path gradients per segment, and the update they combine into, on the
(P, N) gradient buffer of the many-path step (`dpda.train.step`).

Same block layout as `dpda.align.segments` (why: no kernel walks one huge segment serially, no
parameter-sized temporary): the buffer's full 256-element blocks give one (P, P) Gram matrix
each from ONE batched matmul per row chunk, summed per segment in float64; the blocks a segment
boundary cuts are gathered once and handled with per-element segment ids, one row of the Gram
matrix at a time (transient memory: a few (P, V) arrays, V <= 512 x segments, whatever N is). The update
sum_p c[s, p] g_p is one batched matmul per chunk of rows, written into one row of the buffer.
"""

from __future__ import annotations

import torch

from dpda.align.segments import BLOCK, Segments


def _check(buffer: torch.Tensor, segments: Segments) -> None:
    if buffer.dim() != 2:
        raise ValueError(f"path gram: expected a (P, N) buffer, got shape {tuple(buffer.shape)}")
    segments.check(buffer[0])


def path_gram(buffer: torch.Tensor, segments: Segments) -> torch.Tensor:
    """(S, P, P) float64: per segment, the dot products of every pair of the buffer's P rows.

    Sums over one block are in the buffer's dtype; everything above them is float64."""
    _check(buffer, segments)
    n_paths = buffer.shape[0]
    plan = segments.plan(buffer.device)
    out = torch.zeros(segments.count, n_paths, n_paths, dtype=torch.float64, device=buffer.device)
    if plan.rows:
        rows = buffer[:, : plan.rows * BLOCK].view(n_paths, plan.rows, BLOCK).transpose(0, 1)  # (rows, P, BLOCK)
        blk = torch.empty(plan.rows, n_paths, n_paths, dtype=buffer.dtype, device=buffer.device)
        for lo, hi in plan.chunks:
            part = rows[lo:hi]
            torch.bmm(part, part.transpose(1, 2), out=blk[lo:hi])
        blk64 = blk.to(torch.float64)
        blk64.index_fill_(0, plan.split_rows, 0.0)
        out += torch.segment_reduce(blk64.reshape(plan.rows, -1), "sum", offsets=plan.row_offsets,
                                    axis=0).view_as(out)
    if plan.split_idx.numel():
        g = buffer.index_select(1, plan.split_idx).T.contiguous()  # (V, P): at most 2 blocks per segment
        for i in range(n_paths):  # one row of the Gram matrix at a time: a (V, P) product alive, not (V, P, P)
            # pieces are at most BLOCK long: summed in the buffer's dtype, then float64
            pieces = torch.segment_reduce(g * g[:, i : i + 1], "sum", offsets=plan.piece_offsets, axis=0)
            pieces = torch.nn.functional.pad(pieces.to(torch.float64), (0, 0, 0, 1))  # the "no piece" entry
            out[:, i] += pieces.index_select(0, plan.head) + pieces.index_select(0, plan.tail)
    return out


def combine_paths_(buffer: torch.Tensor, coeffs: torch.Tensor, segments: Segments, row: int) -> torch.Tensor:
    """Write sum_p coeffs[s, p] * buffer[p] per segment into ``buffer[row]`` (in place) and return it.

    ``coeffs`` is (1, P) (one set for the whole model) or (S, P) (per segment)."""
    _check(buffer, segments)
    n_paths = buffer.shape[0]
    plan = segments.plan(buffer.device)
    c = coeffs.to(buffer.dtype)
    if c.shape[0] == 1:
        c = c.expand(segments.count, n_paths)
    out = buffer[row]
    if plan.split_idx.numel():  # read the split blocks before the row pass overwrites them
        g_s = buffer.index_select(1, plan.split_idx)  # (P, V)
        v_s = (c.index_select(0, plan.split_seg).T * g_s).sum(0)
    if plan.rows:
        n = plan.rows * BLOCK
        rows = buffer[:, :n].view(n_paths, plan.rows, BLOCK).transpose(0, 1)  # (rows, P, BLOCK)
        c_rows = c.index_select(0, plan.row_seg).unsqueeze(1)  # (rows, 1, P)
        out_rows = out[:n].view(plan.rows, BLOCK)
        for lo, hi in plan.chunks:
            out_rows[lo:hi] = torch.bmm(c_rows[lo:hi], rows[lo:hi]).squeeze(1)
    if plan.split_idx.numel():
        out.index_copy_(0, plan.split_idx, v_s)
    return out
