"""ASVspoof 5 metrics (minDCF, actDCF, Cllr) against the official evaluation package's values,
their intervals, errors, and the breakdown / `dpda score` columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpda.errors import UserError
from dpda.metrics import (
    ASVSPOOF5,
    breakdown,
    compute_act_dcf,
    compute_cllr,
    compute_eer,
    compute_min_dcf,
    metric_interval,
    metric_values,
    parse_metrics,
)
from support import scored_manifest

FIXTURES = Path(__file__).parent / "fixtures" / "asvspoof5"
OFFICIAL = json.loads((FIXTURES / "metric_fixtures.json").read_text())
ARRAYS = np.load(FIXTURES / "metric_fixtures.npz")


def _set(name: str) -> tuple[np.ndarray, np.ndarray]:
    return ARRAYS[f"{name}_bonafide"].astype(np.float64), ARRAYS[f"{name}_spoof"].astype(np.float64)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_equal_to_official_package(name: str) -> None:
    """Fixtures from tests/fixtures/asvspoof5/make_metric_fixtures.py run on the official package."""
    bona, spoof = _set(name)
    expected = OFFICIAL[name]
    assert compute_eer(bona, spoof)[0] == pytest.approx(expected["eer"], abs=1e-12)
    assert compute_min_dcf(bona, spoof)[0] == pytest.approx(expected["min_dcf"], abs=1e-9)
    assert compute_act_dcf(bona, spoof)[0] == pytest.approx(expected["act_dcf"], abs=1e-9)
    assert compute_cllr(bona, spoof) == pytest.approx(expected["cllr"], abs=1e-9)


def test_cost_model_and_invariants() -> None:
    assert ASVSPOOF5.normaliser == pytest.approx(0.5)  # min(1 * 0.95, 10 * 0.05)
    assert ASVSPOOF5.bayes_threshold == pytest.approx(-np.log(1.9))
    bona, spoof = _set("large")
    min_dcf, threshold = compute_min_dcf(bona, spoof)
    assert min_dcf <= compute_act_dcf(bona, spoof)[0]  # the Bayes cut is one of the cut points' costs at best
    assert min_dcf <= 1.0
    # Cllr of an uninformative system (all LLRs 0) is exactly 1 bit; perfect LLRs tend to 0.
    assert compute_cllr([0.0, 0.0], [0.0]) == pytest.approx(1.0)
    assert compute_cllr([50.0], [-50.0]) < 1e-20
    # Cllr stays finite where log1p(exp(-x)) overflows.
    assert compute_cllr([-1000.0], [0.0]) == pytest.approx(0.5 * (1000 / np.log(2) + 1.0))
    # minDCF and EER depend on the order of the scores only; actDCF and Cllr do not.
    assert compute_min_dcf(3 * bona + 7, 3 * spoof + 7)[0] == pytest.approx(min_dcf)
    assert compute_act_dcf(bona + 100, spoof + 100)[0] == pytest.approx(1.0)  # all accepted: the Cfa cost


@pytest.mark.parametrize("fn", [compute_min_dcf, compute_act_dcf, compute_cllr])
def test_missing_class_is_one_line_user_error(fn) -> None:
    with pytest.raises(UserError, match=r"no spoof scores; it needs both") as err:
        fn([0.1, 0.2], [])
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no bona fide scores"):
        fn([], [0.3])
    with pytest.raises(UserError, match="NaN"):
        fn([np.nan], [0.3])


def test_intervals_cover_the_point_estimate() -> None:
    bona, spoof = _set("ties")
    values = metric_values(bona, spoof, ["min_dcf", "act_dcf", "cllr"], draws=200)
    for name in ("min_dcf", "act_dcf", "cllr"):
        assert values[f"{name}_low"] <= values[name] <= values[f"{name}_high"]
        assert values[f"{name}_low"] < values[f"{name}_high"]
    # Same seed, same interval; the EER's wrapper is the same resampling.
    assert metric_interval(lambda b, s: compute_cllr(b, s), bona, spoof, draws=50) == \
        metric_interval(lambda b, s: compute_cllr(b, s), bona, spoof, draws=50)


def test_parse_metrics() -> None:
    assert parse_metrics("all") == ["eer", "min_dcf", "act_dcf", "cllr"]
    assert parse_metrics("minDCF, cllr,mindcf") == ["min_dcf", "cllr"]
    with pytest.raises(UserError, match="--metrics: unknown metric auc"):
        parse_metrics("eer,auc")


def test_breakdown_carries_the_new_columns() -> None:
    bona, spoof = _set("ties")
    manifest, scores = scored_manifest(bona, spoof)
    table = breakdown(manifest, scores)
    assert list(table.columns) == ["factor", "value", "n_bonafide", "n_spoof", "eer", "threshold",
                                   "min_dcf", "act_dcf", "cllr"]
    pooled = table.iloc[0]
    assert pooled["min_dcf"] == pytest.approx(OFFICIAL["ties"]["min_dcf"], abs=1e-9)
    assert pooled["cllr"] == pytest.approx(OFFICIAL["ties"]["cllr"], abs=1e-9)
    a1 = table.iloc[1]
    assert a1["act_dcf"] == pytest.approx(compute_act_dcf(bona, spoof[0::2])[0])
    with_draws = breakdown(manifest, scores, draws=50)
    assert {"min_dcf_low", "min_dcf_high", "act_dcf_low", "cllr_high", "eer_low"} <= set(with_draws.columns)


def test_score_command_metrics_option(tmp_path, capsys) -> None:
    from dpda.cli import main
    from dpda.metrics import write_scores

    bona, spoof = _set("ties")
    utts = [f"LA_{i:04d}" for i in range(len(bona) + len(spoof))]
    keys = tmp_path / "protocol.txt"
    keys.write_text("".join(f"LA_0001 {u} - {'-' if i < len(bona) else 'A0' + str(1 + i % 2)} "
                            f"{'bonafide' if i < len(bona) else 'spoof'}\n" for i, u in enumerate(utts)))
    score_file = write_scores(tmp_path / "scores.txt", utts, np.concatenate([bona, spoof]))
    assert main(["score", str(score_file), str(keys)]) == 0
    default = capsys.readouterr().out
    assert "EER:" in default and "minDCF" not in default and "cllr" not in default
    out_csv = tmp_path / "b.csv"
    assert main(["score", str(score_file), str(keys), "--metrics", "mindcf,actdcf,cllr", "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert f"minDCF: {OFFICIAL['ties']['min_dcf']:.4f}" in out and f"Cllr: {OFFICIAL['ties']['cllr']:.4f}" in out
    assert "EER:" not in out and "eer_percent" not in out and "act_dcf" in out
    pooled = pd.read_csv(out_csv).iloc[0]
    assert pooled["act_dcf"] == pytest.approx(OFFICIAL["ties"]["act_dcf"], abs=1e-9)
    assert pooled["eer"] == pytest.approx(OFFICIAL["ties"]["eer"], abs=1e-12)
    assert main(["score", str(score_file), str(keys), "--metrics", "all", "--draws", "20"]) == 0
    assert "Cllr: " in capsys.readouterr().out
    assert main(["score", str(score_file), str(keys), "--metrics", "auc"]) == 2
    assert "--metrics: unknown metric auc" in capsys.readouterr().err


def test_breakdown_can_leave_the_new_metrics_out() -> None:
    bona, spoof = _set("tiny_reversed")
    manifest = pd.DataFrame({"utt": ["a", "b", "c"], "target": [1, 1, 0], "label": ["bonafide", "bonafide", "spoof"]})
    scores = pd.Series(np.concatenate([bona, spoof]), index=manifest["utt"])
    table = breakdown(manifest, scores, by=[], draws=5, metrics=())
    assert list(table.columns) == ["factor", "value", "n_bonafide", "n_spoof", "eer", "threshold", "eer_low", "eer_high"]
