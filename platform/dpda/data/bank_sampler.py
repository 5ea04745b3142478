"""Draws from a checked bank: per utterance a file and an offset, and only those frames read.

Why seeks: a 60 GB MUSAN must not be held in memory, nor a 5-minute music file decoded to mix
4 s of it. Each draw reads exactly the frames it uses with `sf.read(path, start=, frames=)`:
`length` frames from a long file (wrapping once past its end), the whole file when it is
shorter than `length` (then tiled in memory). Memory is the batch, whatever the bank's size.

Randomness: every index, offset and babble count comes from the caller's `torch.Generator`
(drawn on its device, used on the host), so a seed gives the same noise on any machine. Reads
happen on the host, once per drawn file; the mixing itself (`dpda.augment.mixing`) is batched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from dpda.errors import UserError


def _read(path: str, start: int, frames: int) -> np.ndarray:
    """(frames, channels) float32 from `start`; `sf.read` seeks, so nothing before is decoded."""
    return sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)[0]


def read_span(path: str, total: int, offset: int, length: int, first_channel: bool = False) -> np.ndarray:
    """`length` mono samples of a file of `total` frames starting at `offset`, wrapping to the
    start (tiling) past its end; reads min(length, total) frames. Channels are averaged, or the
    first one taken (`first_channel`: a multi-microphone RIR's channels are not to be mixed)."""
    if total >= length:
        head = _read(path, offset, min(length, total - offset))
        data = head if head.shape[0] == length else np.concatenate([head, _read(path, 0, length - head.shape[0])])
    else:
        whole = _read(path, 0, total)
        data = whole[(offset + np.arange(length)) % max(whole.shape[0], 1)] if whole.shape[0] else np.zeros((length, 1), np.float32)
    return data[:, 0] if first_channel else data.mean(axis=1)


class BankSampler:
    """Draws noise, babble and RIR batches from a bank (`dpda.data.banks.load_bank`'s frame,
    after the check: every row readable, 16 kHz, with its header's `frames`)."""

    def __init__(self, bank: pd.DataFrame, name: str = "bank") -> None:
        if not len(bank):
            raise UserError(f"{name}: the bank has no usable files")
        self.name = name
        self.paths = bank["path"].astype(str).to_numpy()
        self.frames = bank["frames"].to_numpy(dtype=np.int64)
        self.categories = bank["category"].astype(str).to_numpy()
        if (self.frames <= 0).any():
            bad = self.paths[np.flatnonzero(self.frames <= 0)[0]]
            raise UserError(f"{name}: {bad}: zero-length audio (check the bank first)")

    def rows(self, category: str | Sequence[str] | None = None) -> np.ndarray:
        """Row numbers of the files of `category` (one name or several; None: all)."""
        if category is None:
            return np.arange(len(self.paths))
        wanted = [category] if isinstance(category, str) else list(category)
        known = sorted(set(self.categories))
        unknown = [c for c in wanted if c not in known]
        if unknown:
            raise UserError(f"{self.name}: no category {', '.join(map(repr, unknown))} (has {', '.join(known)})")
        return np.flatnonzero(np.isin(self.categories, wanted))

    def _draw(self, generator: torch.Generator, shape: tuple[int, ...],
              category: str | Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """(bank rows, uniform draws in [0, 1) for the offsets), both of `shape`."""
        rows = self.rows(category)
        pick = torch.randint(0, len(rows), shape, generator=generator, device=generator.device).cpu().numpy()
        where = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64).cpu().numpy()
        return rows[pick], where

    def noise(self, generator: torch.Generator, batch: int, length: int,
              category: str | Sequence[str] | None = None) -> torch.Tensor:
        """(batch, length) float32: per utterance a file of `category` from a random offset."""
        chosen, where = self._draw(generator, (batch,), category)
        return torch.from_numpy(np.stack([self.span(r, u, length) for r, u in zip(chosen, where)]))

    def babble(self, generator: torch.Generator, batch: int, length: int, count: tuple[int, int] = (3, 7),
               category: str | Sequence[str] | None = "speech") -> torch.Tensor:
        """(batch, length) float32: per utterance the sum of `count` (drawn in [low, high]) files
        of `category` (speech), each from its own offset. Every utterance draws `high` files, so
        the draws do not depend on the counts; only the first `count` are read."""
        low, high = count
        if not 1 <= low <= high:
            raise UserError(f"{self.name}: babble count: expected 1 <= low <= high, got {list(count)}")
        counts = torch.randint(low, high + 1, (batch,), generator=generator, device=generator.device).cpu().numpy()
        chosen, where = self._draw(generator, (batch, high), category)
        out = np.zeros((batch, length), np.float32)
        for b in range(batch):
            for k in range(int(counts[b])):
                out[b] += self.span(chosen[b, k], where[b, k], length)
        return torch.from_numpy(out)

    def rirs(self, generator: torch.Generator, batch: int, category: str | Sequence[str] | None = None,
             max_frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """((batch, longest) float32 RIRs zero-padded to the longest drawn, (batch,) int64
        lengths): whole files (their first channel), cut to `max_frames` if given."""
        chosen, _ = self._draw(generator, (batch,), category)
        lengths = np.minimum(self.frames[chosen], max_frames) if max_frames else self.frames[chosen]
        out = np.zeros((batch, int(lengths.max())), np.float32)
        for b, (r, n) in enumerate(zip(chosen, lengths)):
            out[b, :n] = read_span(self.paths[r], int(n), 0, int(n), first_channel=True)
        return torch.from_numpy(out), torch.from_numpy(lengths.astype(np.int64))

    def span(self, row: int, where: float, length: int, first_channel: bool = False) -> np.ndarray:
        """`length` samples of bank row `row` from the offset `where` (a uniform draw in [0, 1)
        times its length), as `read_span` reads them."""
        total = int(self.frames[row])
        return read_span(self.paths[row], total, min(int(where * total), total - 1), length, first_channel)
