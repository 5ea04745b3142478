"""Corpus checks once per corpus: a check's verdict, kept under a fingerprint of the corpus.

Why: the check decodes every file of a corpus (for ASVspoof 2019 LA train, 25k files). Run in
every rank of every trial, a search of 8 trials x 4 workers decoded it 32 times. Now the driver
of a search (or of a multi-worker run) checks each corpus once, before anything starts, and
hands the verdicts to every trial and rank with its parameters; they look their corpus up by
fingerprint and trust the verdict instead of decoding again.

The fingerprint (sha256) covers what a verdict depends on: the check's settings (policy, decode
mode, sample-rate range, peak limit, `CHECK_VERSION`; not the fail/skip policy, which is
applied to the verdict), the corpus spec and root, every manifest
row's path, label and id, and each file's size, modification time, change time, inode, mode
(`os.stat`, no read: a file made unreadable is checked again) and symlink-resolved path (a file
swapped for a link to a copy outside the root, same size and time, is checked again). The change
time is there because `touch -d` sets the modification time back and nothing but the kernel sets
the change time: a file rewritten at the same size and touched back to its old time is checked
again. A corpus whose files are replaced, re-encoded or truncated gets a new fingerprint and is
checked again; an unchanged one is not, in this process or a later one. (A copy of a corpus has
other change times and inodes, so each copy is checked once; on a cluster the corpora live on
one shared volume, whose times and inodes every node sees alike.)

Verdicts are also kept on disk, one JSON file per fingerprint in `cache_dir()`:
`$DPDA_CACHE_DIR/corpus_checks` if set, else `$XDG_CACHE_HOME/dpda/corpus_checks`, else
`~/.cache/dpda/corpus_checks`. So a second `dpda train` or `dpda tune` on the same corpus does
not decode it again either. The disk cache is local to each machine; on a cluster the verdicts
travel with the trials' parameters, so nodes need no shared cache directory. An entry that is
not a valid verdict of this corpus (cut short, edited, of another version: wrong types, rows out
of range, another fingerprint) is a miss: the corpus is checked again and the entry overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, NonNegativeInt, ValidationError, model_validator

from dpda.data.audio_file import MAX_PEAK, SAMPLE_RATE_RANGE, RateRange
from dpda.data.check import apply_policy, check_manifest, require_distinct_ids
from dpda.errors import UserError

CHECK_VERSION = 1  # bump when the check finds problems it did not find before
_TRUSTED: dict[str, Verdict] = {}  # verdicts handed to this process by a driver


class Verdict(BaseModel):
    """What one check of one corpus concluded: the bad rows and the report `fail` would raise.

    Strict (no coercion, no unknown keys): a disk entry or a driver's dict that is not exactly
    this shape is refused by `parse`, and the corpus is checked again."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    fingerprint: str
    spec: str
    total: NonNegativeInt
    bad_rows: tuple[NonNegativeInt, ...]
    counts: dict[str, NonNegativeInt]
    report: str  # CheckResult.format_problems(); "" when no row is bad

    @model_validator(mode="after")
    def _rows_in_range(self) -> Verdict:
        if any(row >= self.total for row in self.bad_rows):
            raise ValueError(f"bad_rows: a row index >= total {self.total}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (the disk cache's format, and what travels to trials)."""
        return self.model_dump(mode="json")

    @classmethod
    def parse(cls, text: str | bytes) -> Verdict | None:
        """The verdict a JSON text holds, or None for anything else (then: check again)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError:  # not JSON, not UTF-8, wrong types or shape
            return None


def cache_dir() -> Path:
    """Where verdicts are kept on this machine (see the module docstring)."""
    if os.environ.get("DPDA_CACHE_DIR"):
        return Path(os.environ["DPDA_CACHE_DIR"]) / "corpus_checks"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dpda" / "corpus_checks"


def fingerprint(manifest: pd.DataFrame, sample_rates: RateRange = SAMPLE_RATE_RANGE) -> str:
    """sha256 of the check settings, the corpus and its files' stat stamps (module docstring).
    `sample_rates`: the accepted range (noise and RIR banks accept 16 kHz only, corpora 8-48 kHz)."""
    h = hashlib.sha256()
    settings = {"version": CHECK_VERSION, "decode": "all", "rates": list(sample_rates),
                "max_peak": MAX_PEAK, "spec": manifest.attrs.get("spec"), "root": manifest.attrs.get("root")}
    h.update(json.dumps(settings, sort_keys=True).encode())
    frame = manifest.reset_index(drop=True)
    for path, label, utt in zip(frame["path"].astype(str), frame["label"].astype(str), frame["utt"].astype(str)):
        try:
            st = os.stat(path)
            # where a symlink leads: the check refuses files outside the root, and os.stat follows links
            # the change time and inode: `touch -d` sets the mtime back, not these
            stamp = (f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_mode:o}:"
                     f"{os.path.realpath(path)}")
        except OSError:
            stamp = "missing"
        h.update(f"{path}\0{label}\0{utt}\0{stamp}\n".encode())
    return h.hexdigest()


def trust(verdicts: dict[str, dict[str, Any]] | None) -> None:
    """Accept verdicts a driver computed (fingerprint -> Verdict.to_dict()) for this process;
    one that is not a valid verdict is left out (its corpus is checked again here)."""
    for key, raw in (verdicts or {}).items():
        verdict = Verdict.parse(json.dumps(raw))
        if verdict is not None and verdict.fingerprint == key:
            _TRUSTED[key] = verdict


def _load(key: str, total: int) -> Verdict | None:
    """A known verdict of the corpus with fingerprint `key` and `total` rows, else None."""
    verdict = _TRUSTED.get(key)
    if verdict is None:
        try:
            verdict = Verdict.parse((cache_dir() / f"{key}.json").read_bytes())
        except OSError:  # absent or unreadable: check again
            return None
    if verdict is None or verdict.fingerprint != key or verdict.total != total:
        return None
    return verdict


def _store(verdict: Verdict) -> None:
    _TRUSTED[verdict.fingerprint] = verdict
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{verdict.fingerprint}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(verdict.to_dict()), encoding="utf-8")
        os.replace(tmp, directory / f"{verdict.fingerprint}.json")
    except OSError:  # a read-only home: the verdict still holds for this process
        pass


def verdict_for(manifest: pd.DataFrame, sample_rates: RateRange = SAMPLE_RATE_RANGE) -> Verdict:
    """The corpus's verdict: trusted or cached if its fingerprint is known, else checked now
    (every file decoded, headers' rates within `sample_rates`) and cached."""
    key = fingerprint(manifest, sample_rates)
    known = _load(key, len(manifest))
    if known is not None:
        return known
    result = check_manifest(manifest, policy="skip", sample_rates=sample_rates)  # the verdict; the policy is applied by the caller
    verdict = Verdict(fingerprint=key, spec=str(manifest.attrs.get("spec", "manifest")), total=int(result.total),
                      bad_rows=tuple(int(r) for r in result.bad_rows),
                      counts={str(k): int(v) for k, v in result.counts.items() if v},
                      report="" if result.ok else result.format_problems())
    _store(verdict)
    return verdict


def checked_corpus(manifest: pd.DataFrame, policy: str,
                   sample_rates: RateRange = SAMPLE_RATE_RANGE) -> tuple[pd.DataFrame, Verdict]:
    """(the manifest as the policy leaves it, the verdict); `fail` with bad rows raises."""
    verdict = verdict_for(manifest, sample_rates)
    return apply_policy(manifest, policy, verdict.bad_rows, verdict.report), verdict


def checked_set(specs: list[str], policy: str, what: str, keyed: bool = False) -> list[tuple[pd.DataFrame, Verdict]]:
    """Each corpus of one set read and checked (`checked_corpus`), ids distinct across them.
    `keyed`: `what` is the set's config key, and a corpus that cannot be read is named
    `what[i]` (a typo in `data.eval` names its key and path, not only the path)."""
    from dpda.data.readers import load_corpus

    out = []
    for i, spec in enumerate(specs):
        try:
            corpus = load_corpus(spec)
        except UserError as exc:
            if not keyed:
                raise
            raise UserError(f"{what}[{i}]: {exc}") from None
        out.append(checked_corpus(corpus, policy))
    require_distinct_ids([manifest for manifest, _ in out], what)
    return out


def config_sets(config: dict[str, Any]) -> dict[str, list[str]]:
    """The corpus sets a training config names, by config key: `data.train`, `data.dev` and
    one `data.eval.<name>` per eval set (each scored into its own `<name>.*` files, so an id
    may repeat across eval sets, not within one)."""
    data = config.get("data", {})
    sets = {f"data.{key}": list(data.get(key) or []) for key in ("train", "dev")}
    for name, specs in (data.get("eval") or {}).items():
        sets[f"data.eval.{name}"] = list(specs) if isinstance(specs, (list, tuple)) else [specs]
    return sets


def check_config_corpora(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check every corpus set a training config names (train, dev, each eval set) once, here,
    as the run will (readers, audio, ids distinct within a set), and return the verdicts
    (fingerprint -> dict) to hand to the trials and ranks. A set that fails raises UserError
    naming its config key before anything starts."""
    policy = config.get("data", {}).get("check", "fail")
    out = {}
    for key, specs in config_sets(config).items():
        for _, verdict in checked_set(specs, policy, key, keyed=True):
            out[verdict.fingerprint] = verdict.to_dict()
    return out
