"""EER, minDCF, actDCF and Cllr overall and broken down by attack and by condition (codec, transmission, vocoder, ...).

One rule covers both kinds of column: when every bona fide trial carries `-` in a column (as for
`attack`, where bona fide speech has no attack), each value is a spoof subset and is scored
against ALL bona fide trials, as ASVspoof reports per-attack EERs. Otherwise the column describes
both classes (codec, transmission) and each value's bona fide and spoof trials are scored together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dpda import BONAFIDE, SPOOF
from dpda.errors import UserError
from dpda.metrics.bootstrap import eer_interval
from dpda.metrics.eer import Ties, compute_eer
from dpda.metrics.summary import NEW_METRICS, metric_values

NOT_APPLICABLE = "-"
_FIXED = {"utt", "path", "label", "target", "speaker", "corpus", "subset", "source_file", "source_line"}


def attach_scores(manifest: pd.DataFrame, scores: pd.Series, where: str = "scores") -> pd.DataFrame:
    """The manifest rows with a `score` column; every trial must be scored.

    Scores for utterances not in the manifest are ignored (e.g. a score file covering all
    ASVspoof 2021 trials evaluated on the `eval` phase subset only).
    """
    for col in ("utt", "target"):
        if col not in manifest.columns:
            raise UserError(f"keys: missing column {col!r}")
    if manifest.empty:
        raise UserError("keys: no trials")
    bad = ~manifest["target"].isin([BONAFIDE, SPOOF])
    if bad.any():
        row = manifest.loc[bad].iloc[0]
        origin = f"{row['source_file']}:{row['source_line']}" if "source_file" in manifest else "keys"
        raise UserError(f"{origin}: trial {row['utt']!r} has label {row.get('label', '?')!r}, not bonafide/spoof")
    if manifest["utt"].duplicated().any():
        dup = manifest.loc[manifest["utt"].duplicated(), "utt"].unique()[:5]
        raise UserError(f"keys: duplicated utterance ids, e.g. {', '.join(map(str, dup))}")
    if scores.index.duplicated().any():
        dup = scores.index[scores.index.duplicated()].unique()[:5]
        raise UserError(f"{where}: duplicated utterance ids, e.g. {', '.join(map(str, dup))}")
    aligned = scores.reindex(manifest["utt"].to_numpy())
    missing = aligned.isna().to_numpy()
    if missing.any():
        ids = manifest["utt"].to_numpy()[missing]
        raise UserError(
            f"{where}: {int(missing.sum())} of {len(manifest)} trials have no score, e.g. {', '.join(map(str, ids[:5]))}"
        )
    out = manifest.copy()
    out["score"] = aligned.to_numpy(dtype=np.float64)
    return out


def require_both_classes(manifest: pd.DataFrame) -> None:
    """One UserError line naming the keys file(s) when a set lacks bona fide or spoof trials:
    an EER compares the two, so without one of them every EER would be NaN."""
    bona = int((manifest["target"] == BONAFIDE).sum())
    missing = "bona fide" if bona == 0 else "spoof" if bona == len(manifest) else None
    if missing is None:
        return
    files = sorted(set(manifest["source_file"])) if "source_file" in manifest else ["keys"]
    raise UserError(f"{', '.join(map(str, files))}: no {missing} trial among the {len(manifest)} trials; "
                    "the EER needs both bona fide and spoof trials")


def default_factors(manifest: pd.DataFrame) -> list[str]:
    """`attack`, then every condition column (the non-core manifest columns)."""
    cols = ["attack"] if "attack" in manifest.columns else []
    return cols + [c for c in manifest.columns if c not in _FIXED and c not in cols and c != "score"]


def _row(factor: str, value: str, bona: np.ndarray, spoof: np.ndarray, ties: Ties, draws: int,
         metrics: Sequence[str]) -> dict:
    eer = threshold = low = high = float("nan")
    if bona.size and spoof.size:
        eer, threshold = compute_eer(bona, spoof, ties)
        if draws:
            low, high = eer_interval(bona, spoof, draws=draws, ties=ties)
    row = {"factor": factor, "value": value, "n_bonafide": int(bona.size), "n_spoof": int(spoof.size),
           "eer": eer, "threshold": threshold}
    row |= {"eer_low": low, "eer_high": high} if draws else {}
    return row | metric_values(bona, spoof, metrics, ties=ties, draws=draws)


def breakdown(
    manifest: pd.DataFrame,
    scores: pd.Series,
    by: Sequence[str] | None = None,
    ties: Ties = "asvspoof",
    draws: int = 0,
    metrics: Sequence[str] = NEW_METRICS,
) -> pd.DataFrame:
    """One row per (factor, value) with trial counts and EER (a fraction), plus a first
    `all`/`pooled` row. `by` defaults to `attack` and every condition column. The set must hold
    both classes; a group with only one gets NaN metrics. The ASVspoof 5 metrics follow (`min_dcf`,
    `act_dcf`, `cllr`; see `dpda.metrics.dcf`; `metrics=()` leaves them out, e.g. where only EER
    intervals are read and each extra metric would cost as many resamples). With `draws` > 0 each row also gets a 95%
    bootstrap interval of each (`eer_low`, `eer_high`, `min_dcf_low`, ...; see `metric_interval`)."""
    scored = attach_scores(manifest, scores)
    require_both_classes(scored)
    factors = default_factors(scored) if by is None else list(by)
    for factor in factors:
        if factor not in scored.columns:
            raise UserError(f"breakdown: keys have no column {factor!r} (columns: {', '.join(scored.columns)})")
    is_bona = (scored["target"] == BONAFIDE).to_numpy()
    values = scored["score"].to_numpy()
    rows = [_row("all", "pooled", values[is_bona], values[~is_bona], ties, draws, metrics)]
    for factor in factors:
        column = scored[factor].astype(str).to_numpy()
        spoof_only = bool((column[is_bona] == NOT_APPLICABLE).all())
        groups = np.unique(column[~is_bona] if spoof_only else column)
        for value in groups:
            in_group = column == value
            bona = values[is_bona] if spoof_only else values[is_bona & in_group]
            rows.append(_row(factor, str(value), bona, values[~is_bona & in_group], ties, draws, metrics))
    return pd.DataFrame(rows, columns=list(rows[0]))
