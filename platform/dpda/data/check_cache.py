"""Corpus checks once per corpus: a check's verdict, kept under a fingerprint of the corpus.

Why: the check decodes every file of a corpus (for ASVspoof 2019 LA train, 25k files). Run in
every rank of every trial, a search of 8 trials x 4 workers decoded it 32 times. Now the driver
of a search (or of a multi-worker run) checks each corpus once, before anything starts, and
hands the verdicts to every trial and rank with its parameters; they look their corpus up by
fingerprint and trust the verdict instead of decoding again.

The fingerprint (sha256) covers what a verdict depends on: the check's settings (policy, decode
mode, sample-rate range, peak limit, `CHECK_VERSION`; not the fail/skip policy, which is
applied to the verdict), the corpus spec and root, every manifest
row's path, label and id, and each file's size, modification time, mode (`os.stat`, no
read: a file made unreadable is checked again) and symlink-resolved path (a file swapped for a
link to a copy outside the root, same size and time, is checked again). A
corpus whose files are replaced, re-encoded or truncated gets a new fingerprint and is checked
again; an unchanged one is not, in this process or a later one.

Verdicts are also kept on disk, one JSON file per fingerprint in `cache_dir()`:
`$DPDA_CACHE_DIR/corpus_checks` if set, else `$XDG_CACHE_HOME/dpda/corpus_checks`, else
`~/.cache/dpda/corpus_checks`. So a second `dpda train` or `dpda tune` on the same corpus does
not decode it again either. The disk cache is local to each machine; on a cluster the verdicts
travel with the trials' parameters, so nodes need no shared cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dpda.data.audio_file import MAX_PEAK, SAMPLE_RATE_RANGE
from dpda.data.check import apply_policy, check_manifest

CHECK_VERSION = 1  # bump when the check finds problems it did not find before
_TRUSTED: dict[str, Verdict] = {}  # verdicts handed to this process by a driver


@dataclass(frozen=True)
class Verdict:
    """What one check of one corpus concluded: the bad rows and the report `fail` would raise."""

    fingerprint: str
    spec: str
    total: int
    bad_rows: tuple[int, ...]
    counts: dict[str, int]
    report: str  # CheckResult.format_problems(); "" when no row is bad

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (the disk cache's format, and what travels to trials)."""
        return {**asdict(self), "bad_rows": list(self.bad_rows)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Verdict:
        return cls(raw["fingerprint"], raw["spec"], int(raw["total"]), tuple(int(r) for r in raw["bad_rows"]),
                   {str(k): int(v) for k, v in raw["counts"].items()}, str(raw["report"]))


def cache_dir() -> Path:
    """Where verdicts are kept on this machine (see the module docstring)."""
    if os.environ.get("DPDA_CACHE_DIR"):
        return Path(os.environ["DPDA_CACHE_DIR"]) / "corpus_checks"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dpda" / "corpus_checks"


def fingerprint(manifest: pd.DataFrame) -> str:
    """sha256 of the check settings, the corpus and its files' sizes, mtimes and modes."""
    h = hashlib.sha256()
    settings = {"version": CHECK_VERSION, "decode": "all", "rates": list(SAMPLE_RATE_RANGE),
                "max_peak": MAX_PEAK, "spec": manifest.attrs.get("spec"), "root": manifest.attrs.get("root")}
    h.update(json.dumps(settings, sort_keys=True).encode())
    frame = manifest.reset_index(drop=True)
    for path, label, utt in zip(frame["path"].astype(str), frame["label"].astype(str), frame["utt"].astype(str)):
        try:
            st = os.stat(path)
            # where a symlink leads: the check refuses files outside the root, and os.stat follows links
            stamp = f"{st.st_size}:{st.st_mtime_ns}:{st.st_mode:o}:{os.path.realpath(path)}"
        except OSError:
            stamp = "missing"
        h.update(f"{path}\0{label}\0{utt}\0{stamp}\n".encode())
    return h.hexdigest()


def trust(verdicts: dict[str, dict[str, Any]] | None) -> None:
    """Accept verdicts a driver computed (fingerprint -> Verdict.to_dict()) for this process."""
    for key, raw in (verdicts or {}).items():
        _TRUSTED[key] = Verdict.from_dict(raw)


def _load(key: str) -> Verdict | None:
    if key in _TRUSTED:
        return _TRUSTED[key]
    path = cache_dir() / f"{key}.json"
    try:
        return Verdict.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):  # absent, or a file cut short: check again
        return None


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


def verdict_for(manifest: pd.DataFrame) -> Verdict:
    """The corpus's verdict: trusted or cached if its fingerprint is known, else checked now
    (every file decoded) and cached."""
    key = fingerprint(manifest)
    known = _load(key)
    if known is not None:
        return known
    result = check_manifest(manifest, policy="skip")  # the verdict; the policy is applied by the caller
    verdict = Verdict(key, str(manifest.attrs.get("spec", "manifest")), result.total, tuple(result.bad_rows),
                      {k: v for k, v in result.counts.items() if v}, "" if result.ok else result.format_problems())
    _store(verdict)
    return verdict


def checked_corpus(manifest: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, Verdict]:
    """(the manifest as the policy leaves it, the verdict); `fail` with bad rows raises."""
    verdict = verdict_for(manifest)
    return apply_policy(manifest, policy, verdict.bad_rows, verdict.report), verdict


def check_config_corpora(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Check every corpus a training config names (train, dev, eval sets) once, here, and
    return the verdicts (fingerprint -> dict) to hand to the trials and ranks. A corpus that
    fails under `data.check: fail` raises UserError before anything starts."""
    from dpda.data.readers import load_corpus

    data = config.get("data", {})
    policy = data.get("check", "fail")
    specs = list(data.get("train") or []) + list(data.get("dev") or [])
    evals = data.get("eval") or {}
    for value in (evals.values() if isinstance(evals, dict) else [evals]):
        specs += list(value) if isinstance(value, (list, tuple)) else [value]
    out = {}
    for spec in dict.fromkeys(specs):
        _, verdict = checked_corpus(load_corpus(spec), policy)
        out[verdict.fingerprint] = verdict.to_dict()
    return out
