"""Paired comparisons across seeds: each variant minus a baseline, seed by seed.

Why paired: every variant of a study trains with the same seeds (same initialisation and batch
order), so a seed's difference cancels what the seed alone does, and a paired t-test on the
differences is far more sensitive than comparing the two means. Many comparisons are made at
once (variants x metrics), so the p-values are Holm-adjusted over the whole family. Used by
`dpda study` (dpda_analysis.study) and benchmarks/conflict_study.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from dpda_analysis.conflict import across_runs_interval

ALPHA = 0.05  # family-wise error of the Holm correction
COLUMNS = ["variant", "metric", "seeds", "diff", "low", "high", "p", "p_holm"]


def t_interval(values: Sequence[float] | pd.Series) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of the mean over seeds (NaN bounds with fewer
    than two finite values; zero width when every value is equal). The same definition as the
    report's across-seed interval of a conflict fraction."""
    return across_runs_interval(np.asarray(values, dtype=np.float64))


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over all comparisons)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    return out


def paired_differences(runs: pd.DataFrame, baseline: str, metrics: Sequence[str],
                       variants: Sequence[str] | None = None) -> pd.DataFrame:
    """Every variant minus `baseline`, paired by seed (`runs`: one row per variant x seed, columns
    `variant`, `seed` and the metrics): mean difference, its 95% t-interval, the paired t-test
    p-value and its Holm-adjusted value over every (variant, metric) with a p-value. `variants`
    gives the order (default: first appearance in `runs`); absent ones are skipped. Seeds present
    for only one side are left out of that pair; a metric missing (NaN) on either side of a seed
    drops that seed for that metric."""
    order = list(dict.fromkeys(variants if variants is not None else runs["variant"]))
    base = runs[runs["variant"] == baseline].set_index("seed")
    present = set(runs["variant"])
    rows = []
    for variant in order:
        if variant == baseline or variant not in present:
            continue
        other = runs[runs["variant"] == variant].set_index("seed")
        seeds = base.index.intersection(other.index)
        for col in metrics:
            a = other.loc[seeds, col].astype(float)
            b = base.loc[seeds, col].astype(float)
            both = a.notna() & b.notna()
            a, b = a[both], b[both]
            diff = a - b
            mean, low, high = t_interval(diff)
            if len(diff) < 2:
                p = float("nan")
            elif np.allclose(diff, diff.iloc[0]):  # no spread: the t statistic is undefined
                p = 1.0 if diff.iloc[0] == 0 else 0.0
            else:
                p = float(stats.ttest_rel(a, b).pvalue)
            rows.append({"variant": variant, "metric": col, "seeds": int(len(diff)), "diff": mean, "low": low,
                         "high": high, "p": p})
    tests = pd.DataFrame(rows, columns=COLUMNS[:-1])
    tests["p_holm"] = np.nan
    finite = tests["p"].notna()
    if finite.any():
        tests.loc[finite, "p_holm"] = holm(tests.loc[finite, "p"].to_numpy())
    return tests


def cell(mean: float, low: float, high: float, scale: float) -> str:
    """`mean [low, high]` scaled (100 for a rate in %), one decimal; `n/a` without a mean."""
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(low):
        return f"{scale * mean:.1f}"
    return f"{scale * mean:.1f} [{scale * low:.1f}, {scale * high:.1f}]"


def differences_markdown(tests: pd.DataFrame, heading: Callable[[str], tuple[str, float, str]]) -> str:
    """`paired_differences`' table as Markdown; `heading(metric)` gives its (heading, scale, unit)."""
    lines = ["| variant | metric | seed pairs | difference [95% interval] | p (paired t) | p (Holm) |",
             "|---|---|---|---|---|---|"]
    for r in tests.itertuples():
        name, scale, _ = heading(r.metric)
        lines.append(f"| {r.variant} | {name} | {r.seeds} | {cell(r.diff, r.low, r.high, scale)} | {r.p:.3g} "
                     f"| {r.p_holm:.3g} |")
    return "\n".join(lines)
