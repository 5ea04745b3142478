"""The conflict study's statistics: intervals, paired tests against the baseline, Holm, sentences."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

_SPEC = importlib.util.spec_from_file_location("conflict_study", Path(__file__).parents[1] / "benchmarks/conflict_study.py")
study = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(study)


def test_holm_matches_the_step_down_definition() -> None:
    # sorted p (0.01, 0.03, 0.04) x (3, 2, 1) = (0.03, 0.06, 0.04) -> running max (0.03, 0.06, 0.06)
    assert study.holm(np.array([0.04, 0.01, 0.03])) == pytest.approx([0.06, 0.03, 0.06])
    assert study.holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])  # 2 x 0.5 capped at 1, then the running max


def test_t_interval_is_the_student_interval_of_the_mean() -> None:
    x = pd.Series([0.1, 0.2, 0.15, 0.3, 0.25])
    mean, low, high = study.t_interval(x)
    half = stats.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert (mean, low, high) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
    assert study.t_interval(pd.Series([0.2, 0.2, 0.2])) == pytest.approx((0.2, 0.2, 0.2))


def _results(shift: dict[str, float]) -> pd.DataFrame:
    """Five seeds per variant: the baseline's EERs plus a per-variant shift and seed noise."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.3, 5)
    rows = []
    for variant in study.VARIANTS:
        noise = rng.normal(0, 0.002, 5)
        noise -= noise.mean()  # the mean shift is exactly the one asked for
        for seed in range(5):
            value = base[seed] + shift.get(variant, 0.0) + (0 if variant == study.BASELINE else noise[seed])
            rows.append({"variant": variant, "seed": seed, "eer_eval": value})
    return pd.DataFrame(rows)


def test_paired_tests_find_a_real_shift_and_only_it() -> None:
    results = _results({"dual, MGDA": -0.05})
    tests = study.paired_tests(results, ["eer_eval"])
    assert len(tests) == len(study.VARIANTS) - 1  # one comparison per non-baseline variant
    mgda = tests.set_index("variant").loc["dual, MGDA"]
    assert mgda["diff"] == pytest.approx(-0.05, abs=0.003) and mgda["high"] < 0
    # the paired test (seed effects cancel) and its Holm value over the family
    assert mgda["p"] == pytest.approx(stats.ttest_rel(
        results[results.variant == "dual, MGDA"].eer_eval, results[results.variant == study.BASELINE].eer_eval).pvalue)
    assert mgda["p_holm"] == pytest.approx(study.holm(tests["p"].to_numpy())[tests["variant"].tolist().index("dual, MGDA")])
    assert (tests["p_holm"] >= tests["p"]).all()
    said = dict(zip(tests["variant"].unique(), study.sentences(tests)))
    assert "a lower eval EER by 5.0 points" in said["dual, MGDA"]
    assert "not distinguishable" in said["dual, PCGrad"] and "lower" not in said["dual, PCGrad"]


def test_held_out_table_shows_each_attack_with_its_interval_and_the_mean_of_complete_rows() -> None:
    spec = importlib.util.spec_from_file_location("held_out_attacks", Path(__file__).parents[1] / "benchmarks/held_out_attacks.py")
    held_out = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(held_out)
    rows = [("a", "A01", 0.10, 0.05, 0.20, 0.08), ("a", "A02", 0.30, 0.20, 0.40, 0.06),
            ("b", "A01", 0.50, 0.40, 0.60, 0.10)]  # b has not run A02 yet
    frame = pd.DataFrame(rows, columns=["variant", "attack", "eer_held_out", "eer_held_out_low",
                                        "eer_held_out_high", "eer_dev_seen"])
    lines = held_out.table(frame).splitlines()
    assert lines[0] == "| variant | A01 held out | A02 held out | mean | seen-attack dev EER, mean |"
    assert lines[2] == "| a | 10.0 [5, 20] | 30.0 [20, 40] | 20.0 | 7.0 |"
    assert lines[3] == "| b | 50.0 [40, 60] | n/a | n/a | 10.0 |"
