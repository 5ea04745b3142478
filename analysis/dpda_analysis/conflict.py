"""The conflict fraction: one definition for the training loop, Tune, the telemetry writer and
the report, and the uncertainty the report puts around it.

A step conflicts when the whole-model cosine between the original and the augmented path's
gradients is negative (`steps.conflict`, decided on the device by the step itself). The fraction
counts only steps that were not skipped: a skipped step (non-finite loss or gradient) took no
update, and its gradients say nothing about the training that happened. `step_counts` and
`conflict_fraction` are the definition; `STEP_COUNTS_SQL` is the same rule in SQL for the
report's scans over millions of rows, and the tests check the two agree.

Per transform (a leaf of the augmentation pipeline) or per combination (a mask value: exactly
that set of leaves), from the steps' applied-transforms record (`steps.augment_counts`,
`augment_combos`): a step counts for transform t when it counts (not skipped) and at least one
utterance of its batch received t; the fraction is its conflicting steps over those steps, with
the same Wilson interval over steps. The conflict is a property of the whole batch's gradients,
so a step where one utterance of 32 received t counts as much as one where all did; the
utterance-weighted fraction (each counted step weighted by the utterances that received t) leans
on the steps that t dominated. Both come from `received_counts` (`RECEIVED_COUNTS_SQL`); the
weighted one has no binomial interval (its units are not independent draws).

Why here, in the analysis package: it is the Parquet contract's side (`dpda_analysis.schema`),
which the writer in `dpda.telemetry` already imports; the analysis package cannot import dpda.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

STEP_COUNTS_SQL = ("count(*) FILTER (WHERE NOT skipped) AS counted_steps, "
                   "count(*) FILTER (WHERE NOT skipped AND conflict) AS conflict_steps")
"""`step_counts` in SQL over a table with the `steps` columns `skipped` and `conflict`."""

RECEIVED_COUNTS_SQL = ("count(*) FILTER (WHERE NOT skipped AND received > 0) AS counted_steps, "
                       "count(*) FILTER (WHERE NOT skipped AND received > 0 AND conflict) AS conflict_steps, "
                       "coalesce(sum(received) FILTER (WHERE NOT skipped), 0) AS received_utterances, "
                       "coalesce(sum(received) FILTER (WHERE NOT skipped AND conflict), 0) AS conflict_utterances")
"""`received_counts` in SQL over one row per (step, transform or combination) with the `steps`
columns `skipped`, `conflict` and `received` (the utterances of the step that received it)."""

LEVEL = 0.95


def step_counts(skipped: ArrayLike, conflict: ArrayLike) -> tuple[int, int]:
    """(counted steps, conflicting steps) of one step or an array of steps."""
    ok = ~np.asarray(skipped, dtype=bool)
    return int(ok.sum()), int((np.asarray(conflict, dtype=bool) & ok).sum())


def received_counts(skipped: ArrayLike, conflict: ArrayLike, received: ArrayLike) -> tuple[int, int, int, int]:
    """For one transform or combination over steps, with `received` its utterances per step:
    (counted steps, conflicting steps, received utterances, those in conflicting steps), all
    over non-skipped steps; the steps count only where received > 0. The fraction is
    `conflict_fraction(conflicting, counted)`, the utterance-weighted one the same over the
    utterances."""
    received = np.asarray(received, dtype=np.int64)
    ok = ~np.asarray(skipped, dtype=bool)
    hit = np.asarray(conflict, dtype=bool) & ok
    return (int((ok & (received > 0)).sum()), int((hit & (received > 0)).sum()),
            int(received[ok].sum()), int(received[hit].sum()))


def conflict_fraction(conflict_steps: Any, counted_steps: Any) -> Any:
    """Conflicting over counted steps; NaN where no step counted (scalars or arrays)."""
    k = np.asarray(conflict_steps, dtype=np.float64)
    n = np.asarray(counted_steps, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, k / np.where(n > 0, n, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def steps_interval(conflict_steps: Any, counted_steps: Any, level: float = LEVEL) -> tuple[Any, Any]:
    """Wilson score interval of the fraction over steps (NaN where no step counted).

    Treats steps as independent draws; consecutive steps are correlated, so this is a lower
    bound on the uncertainty of a trial's fraction (the across-seeds interval is the honest one
    when there are several seeds)."""
    k = np.asarray(conflict_steps, dtype=np.float64)
    n = np.asarray(counted_steps, dtype=np.float64)
    z = stats.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        low, high = np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def across_runs_interval(fractions: ArrayLike, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of per-run (e.g. per-seed) fractions;
    NaN bounds with fewer than two finite values."""
    x = np.asarray(fractions, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half
