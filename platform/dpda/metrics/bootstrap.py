"""Bootstrap confidence intervals for the EER and the other two-class metrics (minDCF, actDCF, Cllr).

Why: the real-audio set's held-out subsets have tens to hundreds of trials per family or speaker,
where an EER alone can mislead by several points. The interval resamples bona fide and spoof
trials separately (stratified percentile bootstrap, the class sizes stay fixed), so each draw is
scored exactly as the point estimate is; it ignores the correlation between trials that share a
speaker or a text, so it is a lower bound on the real uncertainty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from dpda.errors import UserError
from dpda.metrics.eer import Ties, compute_eer

DEFAULT_DRAWS = 1000


def metric_interval(metric: Callable[[np.ndarray, np.ndarray], float], bonafide_scores: ArrayLike,
                    spoof_scores: ArrayLike, *, draws: int = DEFAULT_DRAWS, level: float = 0.95,
                    seed: int = 0) -> tuple[float, float]:
    """(low, high): the central `level` percentile interval of `metric(bona, spoof)` over `draws`
    stratified resamples. `metric` is first called on the full sets, so its own checks (empty,
    NaN, a class missing) raise the same messages as the point estimate."""
    if not 0.0 < level < 1.0:
        raise UserError(f"level: expected a number in (0, 1), got {level}")
    if draws < 1:
        raise UserError(f"draws: expected >= 1, got {draws}")
    bona = np.asarray(bonafide_scores, dtype=np.float64).ravel()
    spoof = np.asarray(spoof_scores, dtype=np.float64).ravel()
    metric(bona, spoof)
    rng = np.random.default_rng(seed)
    values = np.empty(draws)
    for k in range(draws):
        values[k] = metric(bona[rng.integers(0, bona.size, bona.size)], spoof[rng.integers(0, spoof.size, spoof.size)])
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def eer_interval(bonafide_scores: ArrayLike, spoof_scores: ArrayLike, *, draws: int = DEFAULT_DRAWS,
                 level: float = 0.95, seed: int = 0, ties: Ties = "asvspoof") -> tuple[float, float]:
    """(low, high): the central `level` percentile interval of the EER over `draws` resamples."""
    return metric_interval(lambda b, s: compute_eer(b, s, ties)[0], bonafide_scores, spoof_scores,
                           draws=draws, level=level, seed=seed)
