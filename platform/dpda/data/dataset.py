"""Torch Dataset over a manifest, and a seeded DataLoader factory.

Random crops (and, with `augment`, the RawBoost draws of the published input pipeline) come from
a generator seeded by (seed, epoch, index), never from worker-local RNG state, so a run gives the
same batches with 0, 1 or 8 workers and can be resumed mid-way.
A file that turns bad after `dpda check` (disk error, truncated copy) must not kill a long run:
it is logged once, counted, and replaced by the next readable item.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dpda import SAMPLE_RATE
from dpda.data.audio import DEFAULT_LENGTH, AudioReadError, crop_offset, fix_length, load_audio
from dpda.data.manifest import UNKNOWN_TARGET, origin, validate_manifest
from dpda.errors import UserError

log = logging.getLogger(__name__)


def stream_seed(*keys: int) -> int:
    """A 64-bit seed from a few integers; SeedSequence mixes them so nearby keys give unrelated streams."""
    state = np.random.SeedSequence([int(keys[0]) & 0xFFFFFFFF, *(int(k) for k in keys[1:])]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def item_generator(seed: int, epoch: int, index: int, path: int = 0) -> torch.Generator:
    """Generator for one item's randomness, from (seed, epoch, index); augmented path `path` > 0
    (`augment.paths`) draws from its own stream, path 0 from the item's (crop, then augmentation)."""
    keys = (seed, epoch, index) if path == 0 else (seed, epoch, index, path)
    return torch.Generator().manual_seed(stream_seed(*keys))


class AudioDataset(Dataset):
    """Items `(wave float32 [length], target int64, index int64)` from manifest rows; with
    `augment`, `(wave, augmented wave, target, index)`, and with an augmentation pipeline (an
    `augment` that has `augment(batch, generator) -> (batch, mask)`, `dpda.augment.pipeline`)
    `(wave, augmented wave, mask int64, target, index)`: the utterance's applied-transforms mask,
    for telemetry. With several augmentations (a sequence: one per augmented path, `augment.paths`)
    the augmented waves and masks are stacked, `(K, length)` and `(K,)`, each path drawn from its
    own stream (`item_generator(..., path)`; the first path from the item's, as with one).

    `index` is the manifest row actually returned: it differs from the requested index only when
    the requested file failed to read and was substituted, so scores stay attributable.
    Training crops start at a random offset (per epoch, see `set_epoch`) with `crop="random"`, at
    0 with `crop="first"` (published); eval crops start at 0. Short files are tiled to `length`.
    `augment` (a `dpda.augment.RawBoost`, training only) is the published input pipeline: RawBoost
    on the whole utterance, then the original and its copy cropped at the same offset, so a short
    utterance's noise is tiled with it. Without it the trainer augments the cropped batch on the
    device (dpda's default: batched, and the noise never repeats).
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        length: int = DEFAULT_LENGTH,
        train: bool = False,
        seed: int = 0,
        sample_rate: int = SAMPLE_RATE,
        crop: Literal["random", "first"] = "random",
        augment: torch.nn.Module | Sequence[torch.nn.Module] | None = None,
    ) -> None:
        if crop not in ("random", "first"):
            raise ValueError(f"crop must be 'random' or 'first', got {crop!r}")
        validate_manifest(manifest)
        unknown = manifest["target"] == UNKNOWN_TARGET
        if unknown.any():
            row = manifest.loc[unknown].iloc[0]
            raise UserError(f"{origin(row)}: unknown label {row['label']!r} (run `dpda check`)")
        if len(manifest) == 0:
            raise UserError(f"{manifest.attrs.get('spec', 'manifest')}: no rows to load")
        self.paths: list[str] = manifest["path"].tolist()
        self.targets = torch.tensor(manifest["target"].to_numpy(dtype=np.int64, copy=True))
        self.length = int(length)
        self.train = bool(train)
        self.seed = int(seed)
        self.sample_rate = int(sample_rate)
        self.crop = crop
        self.augment = augment if train else None
        self._stacked = isinstance(augment, (list, tuple))  # one augmentation per path: stacked items
        self.epoch = 0
        self.failures: Counter[str] = Counter()  # path -> failed reads, in this process
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's crops; call before iterating (workers copy the dataset per epoch)."""
        self.epoch = int(epoch)

    def _load(self, index: int) -> tuple[torch.Tensor, ...]:
        """The cropped wave, and with `augment` its augmented copy (same offset)."""
        # scoring reads only its window (from the start); training crops anywhere and augments whole files
        wave = load_audio(self.paths[index], self.sample_rate, max_samples=None if self.train else self.length)
        gen = item_generator(self.seed, self.epoch, index) if self.train else None
        offset = crop_offset(wave.shape[-1], self.length, gen if self.crop == "random" else None)
        cropped = fix_length(wave, self.length, offset)
        if self.augment is None:
            return (cropped,)
        if not self._stacked:
            return (cropped, *self._augmented(self.augment, wave, gen, offset))
        parts = [self._augmented(a, wave, gen if k == 0 else item_generator(self.seed, self.epoch, index, k), offset)
                 for k, a in enumerate(self.augment)]
        return (cropped, *(torch.stack(column) for column in zip(*parts)))

    def _augmented(self, augment: torch.nn.Module, wave: torch.Tensor, gen: torch.Generator | None,
                   offset: int) -> tuple[torch.Tensor, ...]:
        """The augmented copy cropped at `offset` (and a pipeline's mask): the whole utterance,
        drawn after the crop from the same per-item stream."""
        if hasattr(augment, "augment"):  # a pipeline: its mask too (same draws as its forward)
            augmented, mask = augment.augment(wave.unsqueeze(0), gen)
            return fix_length(augmented.squeeze(0), self.length, offset), mask.reshape(())
        return (fix_length(augment(wave, generator=gen), self.length, offset),)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        n = len(self.paths)
        index = int(index)
        for step in range(n):
            j = (index + step) % n  # deterministic substitute: the next readable row
            if j in self._bad:
                continue
            try:
                waves = self._load(j)
            except AudioReadError as exc:
                if not self.train:  # a score must belong to its own file: evaluation never substitutes
                    raise AudioReadError(f"{exc} (it became unreadable after the check; fix or remove it)") from None
                self._bad.add(j)
                self.failures[self.paths[j]] += 1
                if self.failures[self.paths[j]] == 1:
                    log.warning("skipping unreadable audio (substituting the next item): %s", exc)
                continue
            return *waves, self.targets[j], torch.tensor(j, dtype=torch.int64)
        raise UserError(f"none of the {n} audio files could be read (first: {self.paths[0]})")


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    sampler: Sampler | None = None,
) -> DataLoader:
    """DataLoader whose shuffling comes from a generator seeded with `seed`.

    With a `sampler` (e.g. DistributedSampler, which owns shuffling and needs its own
    `set_epoch`), `shuffle` is ignored. Workers are not persistent so `dataset.set_epoch` reaches
    them at each new iteration.
    """
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=bool(shuffle) if sampler is None else False,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=False,
    )
