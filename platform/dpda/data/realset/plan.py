"""Which files the real-audio set holds: the bona fide recordings, the spoofs that read their
texts, and the standard train/dev/test partition. Pure bookkeeping, no audio.

Why hashes instead of a shuffled list: a prompt's partition and a text's voices are functions of
(seed, name) alone, so they do not move when another language or voice is installed or left out;
two machines with different package sets agree on every file they both have.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dpda.data.realset.sources import Recording
from dpda.data.realset.voices import FAMILIES, Voice

PARTITIONS: tuple[tuple[str, float], ...] = (("train", 0.6), ("dev", 0.8), ("test", 1.0))  # cumulative shares
PROBE = "probe"


@dataclass(frozen=True)
class Item:
    """One file of the set: a bona fide recording, or a voice reading that recording's text."""

    recording: Recording
    voice: Voice | None  # None: the bona fide recording itself
    subset: str  # train / dev / test (the standard partition, by prompt) or probe

    @property
    def utt(self) -> str:
        return self.recording.utt if self.voice is None else f"{self.recording.utt}--{self.voice.attack}"

    @property
    def label(self) -> str:
        return "bonafide" if self.voice is None else "spoof"


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) determined by `parts` (stable across runs and platforms)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def partition(seed: int, prompt: str) -> str:
    """train / dev / test for a prompt (about 60 / 20 / 20 %); translations share a prompt name,
    so a prompt's readings in every language fall in the same partition."""
    u = unit_hash(seed, "partition", prompt)
    return next(name for name, upto in PARTITIONS if u < upto)


def choose_voices(recording: Recording, voices: list[Voice], seed: int) -> list[Voice]:
    """One voice of each family that speaks the recording's language, picked by hash."""
    chosen = []
    for family in FAMILIES:
        pool = [v for v in voices if v.family == family and recording.language in v.languages]
        if pool:
            chosen.append(pool[int(unit_hash(seed, "voice", recording.utt, family) * len(pool))])
    return chosen


def limit_per_language(recordings: list[Recording], per_language: int | None, seed: int) -> list[Recording]:
    """At most `per_language` prompts of each language (a hash-ordered, seed-stable choice);
    the probe recordings are always kept."""
    if per_language is None:
        return recordings
    kept: list[Recording] = [r for r in recordings if r.probe]
    for language in sorted({r.language for r in recordings if not r.probe}):
        pool = [r for r in recordings if not r.probe and r.language == language]
        pool.sort(key=lambda r: unit_hash(seed, "pick", r.utt))
        kept += pool[:per_language]
    order = {r.utt: i for i, r in enumerate(recordings)}
    return sorted(kept, key=lambda r: order[r.utt])


def plan_items(recordings: list[Recording], voices: list[Voice], seed: int) -> list[Item]:
    """Every file of the set: each recording, then its text read by one voice per family."""
    items = []
    for rec in recordings:
        subset = PROBE if rec.probe else partition(seed, rec.prompt)
        items.append(Item(rec, None, subset))
        items += [Item(rec, v, subset) for v in choose_voices(rec, voices, seed)]
    return items
