"""The corpora a config or command names, read and checked as one manifest.

Why here: training and evaluation both turn corpus specs into a checked manifest before any GPU
time is spent; it belongs to the data layer, below both.
"""

from __future__ import annotations

import pandas as pd

from dpda.console import info
from dpda.data.check_cache import checked_set
from dpda.data.manifest import concat_manifests
from dpda.errors import UserError


def load_manifest(specs: list[str], policy: str, what: str, keyed: bool = False) -> pd.DataFrame:
    """Read and check corpora before any GPU time is spent; skip mode drops and counts bad rows.

    Each corpus is checked on its own so paths are bounded by that corpus's root. An utterance
    id in two corpora of the set (or one corpus listed twice) fails in either mode: dropping
    either copy would be a guess, and keeping both counts the trial twice. `keyed`: `what` is
    the set's config key (`data.eval.la21`), and a corpus that cannot be read is named by it
    (`data.eval.la21[0]: ...`).

    A corpus whose verdict is already known (checked by a search's driver, or earlier on this
    machine, with the same files) is not decoded again (dpda.data.check_cache)."""
    frames = []
    for spec, (manifest, verdict) in zip(specs, checked_set(specs, policy, what, keyed)):
        if verdict.bad_rows:
            counts = ", ".join(f"{k}: {v}" for k, v in verdict.counts.items() if v)
            info(f"[dpda] {what} {spec}: skipped {len(verdict.bad_rows)} bad rows ({counts})")
        frames.append(manifest)
    return concat_manifests(frames).reset_index(drop=True)


def spoof_attacks(manifest: pd.DataFrame) -> set[str]:
    """The attack names of a manifest's spoofed rows."""
    return set(manifest.loc[manifest["label"] == "spoof", "attack"])


def without_attacks(manifest: pd.DataFrame, attacks: list[str], key: str, required: bool) -> pd.DataFrame:
    """`manifest` without the spoofs of `attacks` (a leave-attacks-out protocol, `key` names the
    setting). `required`: each attack must be a spoofing attack of this manifest (the training
    set: a typo must not leave the protocol silently unchanged), and spoofs must remain."""
    if not attacks:
        return manifest
    present = spoof_attacks(manifest)
    if required:
        unknown = [a for a in attacks if a not in present]
        if unknown:
            raise UserError(f"{key}: {', '.join(map(repr, unknown))} not among the training spoofs' attacks "
                            f"({', '.join(sorted(present)) or 'none'})")
        if present <= set(attacks):
            raise UserError(f"{key}: holds out every training attack; no spoofed training utterance is left")
    drop = (manifest["label"] == "spoof") & manifest["attack"].isin(attacks)
    return manifest[~drop].reset_index(drop=True)
