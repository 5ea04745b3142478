"""Bootstrap intervals of the EER: what they cover, how they shrink, and the breakdown's columns."""

from __future__ import annotations

import numpy as np
import pytest

from dpda.errors import UserError
from dpda.metrics import breakdown, compute_eer, eer_interval
from support import scored_manifest


def _gaussian_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bona fide N(1, 1) against spoof N(-1, 1): the true EER is Phi(-1) = 15.87%."""
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n)


def test_interval_brackets_the_estimate_and_the_true_eer() -> None:
    bona, spoof = _gaussian_scores(1500, 0)
    low, high = eer_interval(bona, spoof, draws=400)
    eer = compute_eer(bona, spoof)[0]
    assert low < eer < high
    assert low < 0.15866 < high
    assert 0.01 < high - low < 0.05  # about 4 * sqrt(p(1-p)/n) wide for n = 1500 per class


def test_interval_shrinks_with_more_trials_and_is_deterministic() -> None:
    small = eer_interval(*_gaussian_scores(100, 1), draws=300)
    large = eer_interval(*_gaussian_scores(3000, 1), draws=300)
    assert (large[1] - large[0]) < 0.4 * (small[1] - small[0])
    assert eer_interval(*_gaussian_scores(100, 1), draws=300) == small
    assert eer_interval(*_gaussian_scores(100, 1), draws=300, seed=5) != small


def test_separable_scores_have_a_zero_interval() -> None:
    assert eer_interval([3.0, 4.0, 5.0], [-1.0, 0.0], draws=50) == (0.0, 0.0)


@pytest.mark.parametrize(("kwargs", "message"), [({"level": 1.5}, "level"), ({"draws": 0}, "draws")])
def test_bad_arguments_are_user_errors(kwargs, message) -> None:
    with pytest.raises(UserError, match=message):
        eer_interval([1.0], [0.0], **kwargs)
    with pytest.raises(UserError, match="no scores"):
        eer_interval([], [0.0])


def test_breakdown_adds_interval_columns_only_when_asked() -> None:
    bona, spoof = _gaussian_scores(200, 2)
    manifest, scores = scored_manifest(bona, spoof)
    plain = breakdown(manifest, scores)
    assert "eer_low" not in plain.columns
    table = breakdown(manifest, scores, draws=200)
    assert list(table["value"]) == ["pooled", "A1", "A2"]
    assert table[["factor", "value", "eer"]].equals(plain[["factor", "value", "eer"]])
    assert (table["eer_low"] <= table["eer"]).all() and (table["eer"] <= table["eer_high"]).all()
