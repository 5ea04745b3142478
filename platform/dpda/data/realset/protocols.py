"""Held-out protocols of the real-audio set: which rows train, tune and test a detector.

Why several: one EER over everything says little when the set has obvious shortcuts. A detector
can learn "is this the prompt speaker?" (one professional voice dominates each language) or "is
this the kind of synthesizer I saw?". Holding out a method family tests the second; holding out a
language, or a speaker across her languages, tests the first. Texts never cross partitions
(train/dev/test are by prompt), and the tiny multi-speaker English recordings are never trained on
(`probe`: a speaker-shift probe in every protocol).

    family-F    train/dev: every family but F; test: F's spoofs and the bona fide speech of the
                languages F speaks (test prompts only)
    language-L  train/dev: the other languages; test: all of L
    speaker-S   train/dev: everything not read from S's prompts; test: S's recordings and the
                spoofs of her prompts (only where S is not simply one language)
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dpda.data.realset.plan import PROBE
from dpda.data.realset.voices import FAMILIES

SUBSETS: tuple[str, ...] = ("train", "dev", "test", PROBE)


@dataclass(frozen=True)
class Protocol:
    name: str
    holds_out: str  # what the test subset has that training never saw
    frame: pd.DataFrame  # the set's rows with `subset` set for this protocol (unused rows dropped)


def _assemble(frame: pd.DataFrame, train: pd.Series, test: pd.Series, probe: pd.Series) -> pd.DataFrame:
    """Rows of train (standard train partition), dev (standard dev), test and probe masks."""
    part = frame["subset"]
    subset = pd.Series(None, index=frame.index, dtype=object)
    subset[train & (part == "train")] = "train"
    subset[train & (part == "dev")] = "dev"
    subset[test] = "test"
    subset[probe & (part == PROBE)] = PROBE
    out = frame.assign(subset=subset)
    return out[out["subset"].notna()].reset_index(drop=True)


def _usable(frame: pd.DataFrame) -> bool:
    """Train, dev (model selection scores an EER) and test each hold both classes."""
    return all(set(frame.loc[frame["subset"] == s, "label"]) == {"bonafide", "spoof"} for s in ("train", "dev", "test"))


def held_out_protocols(frame: pd.DataFrame) -> list[Protocol]:
    """Every usable protocol for the rows of `frame` (columns as written to real.csv)."""
    bona = frame["label"] == "bonafide"
    main = frame["subset"] != PROBE
    protocols: list[Protocol] = []
    for family in FAMILIES:
        spoofs = frame["family"] == family
        if not spoofs.any():
            continue
        languages = set(frame.loc[spoofs, "language"])
        in_scope = frame["language"].isin(languages) & (bona | spoofs)
        test = main & (frame["subset"] == "test") & in_scope
        protocols.append(Protocol(f"family-{family}", f"{family} synthesizers",
                                  _assemble(frame, main & ~spoofs, test, bona | spoofs)))
    languages = sorted(set(frame.loc[main, "language"]))
    for language in languages if len(languages) > 1 else []:
        held = frame["language"] == language
        protocols.append(Protocol(f"language-{language}", f"the language {language} (its speakers and texts)",
                                  _assemble(frame, main & ~held, main & held, ~main)))
    for speaker in sorted(set(frame.loc[main & bona, "prompt_speaker"])):
        held = main & (frame["prompt_speaker"] == speaker)
        same = [lang for lang in languages if (held == (main & (frame["language"] == lang))).all()]
        if same:
            continue  # identical to language-<lang>
        protocols.append(Protocol(f"speaker-{speaker}", f"the speaker {speaker} in every language she or he speaks",
                                  _assemble(frame, main & ~held, held, ~main)))
    return [p for p in protocols if _usable(p.frame)]
