"""EERs of a scored real-audio set: overall, per family / speaker / language, and on every
held-out protocol's test and probe subsets, each with a bootstrap interval.

Why from one score file: a model that never trained on the set (the quickstart's, the study's)
needs scoring once; every protocol's test subset is a subset of the set's rows, so its EER comes
from the same scores. A model trained on a protocol's train split is scored on that protocol only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dpda.errors import UserError

CORPUS_FILE = "real.csv"
PROTOCOL_PREFIX = "protocol-"  # OUT/protocol-NAME.csv, beside real.csv (paths must stay under a CSV's folder)
SUMMARY_COLUMNS = ("scope", "factor", "value", "n_bonafide", "n_spoof", "eer", "eer_low", "eer_high")
WHOLE_SET_FACTORS = ("family", "prompt_speaker", "language", "gender")


def is_real_set(root: str | Path) -> bool:
    """Whether `root` holds a finished set (real.csv is written last)."""
    return (Path(root) / CORPUS_FILE).is_file()


def corpus_spec(root: str | Path, subset: str | None = None) -> str:
    """The corpus spec of the whole set (or of one standard subset)."""
    return f"csv:{Path(root) / CORPUS_FILE}" + (f":{subset}" if subset else "")


def protocol_specs(root: str | Path) -> dict[str, str]:
    """name -> spec of each held-out protocol's CSV (append :train, :dev, :test or :probe); the
    standard partition is `corpus_spec(root)` itself."""
    files = sorted(Path(root).glob(f"{PROTOCOL_PREFIX}*.csv"))
    return {p.stem.removeprefix(PROTOCOL_PREFIX): f"csv:{p}" for p in files}


def summarize(root: str | Path, scores: pd.Series, *, draws: int = 1000) -> pd.DataFrame:
    """The summary table (SUMMARY_COLUMNS; EERs as fractions) for `scores` of the whole set.

    Scope `all` is the whole set (per family: each family's spoofs against every bona fide trial,
    the ASVspoof per-attack convention; per speaker, language and gender: that speaker's,
    language's or voice gender's trials of both classes); scope `PROTOCOL:test` / `PROTOCOL:probe` is that subset, pooled, with
    `standard` for the set's own train/dev/test partition."""
    from dpda.data.readers import load_corpus
    from dpda.metrics import breakdown

    if not is_real_set(root):
        raise UserError(f"{Path(root) / CORPUS_FILE}: no real-audio set here (build it with: dpda realset {root})")
    whole = load_corpus(corpus_spec(root))
    factors = [f for f in WHOLE_SET_FACTORS if f in whole.columns]  # sets built before `gender` lack it
    tables = [breakdown(whole, scores, by=factors, draws=draws, metrics=()).assign(scope="all")]
    for name, spec in {"standard": corpus_spec(root), **protocol_specs(root)}.items():
        protocol = load_corpus(spec)
        for subset in ("test", "probe"):
            rows = protocol[protocol["subset"] == subset]
            if rows["target"].nunique() == 2:
                tables.append(breakdown(rows, scores, by=[], draws=draws, metrics=()).assign(scope=f"{name}:{subset}"))
    table = pd.concat(tables, ignore_index=True)
    return table.loc[table["n_bonafide"].gt(0) & table["n_spoof"].gt(0), list(SUMMARY_COLUMNS)].reset_index(drop=True)


def headline(table: pd.DataFrame) -> str:
    """One line: overall, per-family and held-out-family EERs with intervals, in percent."""
    def cell(row: pd.Series) -> str:
        return f"{100 * row['eer']:.1f}% [{100 * row['eer_low']:.1f}, {100 * row['eer_high']:.1f}]"

    whole = table[table["scope"] == "all"]
    parts = [f"all {cell(whole.iloc[0])}"]
    parts += [f"{r['value']} {cell(r)}" for _, r in whole[whole["factor"] == "family"].iterrows()]
    return "; ".join(parts)
