"""The conflict fraction: one definition for the training loop, Tune, the telemetry writer and
the report, and the uncertainty the report puts around it.

A step conflicts when the whole-model cosine between the original and the augmented path's
gradients is negative (`steps.conflict`, decided on the device by the step itself). The fraction
counts only steps that were not skipped: a skipped step (non-finite loss or gradient) took no
update, and its gradients say nothing about the training that happened. `step_counts` and
`conflict_fraction` are the definition; `STEP_COUNTS_SQL` is the same rule in SQL for the
report's scans over millions of rows, and the tests check the two agree.

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

LEVEL = 0.95


def step_counts(skipped: ArrayLike, conflict: ArrayLike) -> tuple[int, int]:
    """(counted steps, conflicting steps) of one step or an array of steps."""
    ok = ~np.asarray(skipped, dtype=bool)
    return int(ok.sum()), int((np.asarray(conflict, dtype=bool) & ok).sum())


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
