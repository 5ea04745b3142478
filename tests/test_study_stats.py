"""The study statistics (dpda_analysis.paired): intervals, paired tests against the baseline, Holm;
and benchmarks/conflict_study.py's tables and sentences built on them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dpda_analysis import paired

_SPEC = importlib.util.spec_from_file_location("conflict_study", Path(__file__).parents[1] / "benchmarks/conflict_study.py")
study = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(study)


def test_holm_matches_the_step_down_definition() -> None:
    # sorted p (0.01, 0.03, 0.04) x (3, 2, 1) = (0.03, 0.06, 0.04) -> running max (0.03, 0.06, 0.06)
    assert paired.holm(np.array([0.04, 0.01, 0.03])) == pytest.approx([0.06, 0.03, 0.06])
    assert paired.holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])  # 2 x 0.5 capped at 1, then the running max


def test_t_interval_is_the_student_interval_of_the_mean() -> None:
    x = pd.Series([0.1, 0.2, 0.15, 0.3, 0.25])
    mean, low, high = paired.t_interval(x)
    half = stats.t.ppf(0.975, 4) * x.std(ddof=1) / np.sqrt(5)
    assert (mean, low, high) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
    assert paired.t_interval(pd.Series([0.2, 0.2, 0.2])) == pytest.approx((0.2, 0.2, 0.2))
    assert study.t_interval is paired.t_interval  # the benchmark uses the module's definition


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
    assert mgda["p_holm"] == pytest.approx(paired.holm(tests["p"].to_numpy())[tests["variant"].tolist().index("dual, MGDA")])
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


_PIPELINE_VARIANTS = ("dual, noise + reverb", "dual, noise + reverb + RawBoost")


@pytest.fixture(scope="module")
def banks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Small `dpda banks` banks (the study builds its own with the defaults, the same way)."""
    from dpda.data.bank_builder import write_banks
    from dpda.data.bank_config import BankSizes

    return write_banks(tmp_path_factory.mktemp("banks"), BankSizes(noise=1, music=1, speech=3, rooms=1,
                                                                   rirs_per_room=1, min_seconds=0.5, max_seconds=0.5))


def test_pipeline_variants_load_with_the_study_banks(banks: dict[str, str]) -> None:
    from dpda.train.config import config_from_dict

    for variant in _PIPELINE_VARIANTS:
        cfg = config_from_dict(study.variant_config("/data", 3, 2, variant, seed=7, banks=banks), source=variant)
        # the published baseline's path and rule: only the augmented path differs
        assert (cfg.augment.mode, cfg.align.rule, cfg.align.mode, cfg.seed) == ("dual", "none", "joint", 7)
        dumped = cfg.to_dict()["augment"]
        assert "rawboost" not in dumped  # demo.yaml's augment.rawboost gave way to the pipeline
        leaves = [leaf.name for leaf in cfg.augment.pipeline.leaves()]
        assert leaves == ["reverb", "noise"] + (["rawboost"] if variant.endswith("RawBoost") else [])
        text = repr(dumped["pipeline"])
        assert banks["noise"] in text and banks["rirs"] in text and "data/musan" not in text
    # RawBoost in the pipeline is the other rows' RawBoost (demo.yaml), not the published config's variant
    pipeline = study.study_pipeline(study.ROOT / "configs/published_musan_rir_rawboost.yaml", banks)
    assert pipeline["steps"][1] == {"rawboost": {"name": "rawboost", **study.study_config()["augment"]["rawboost"]}}
    # and the existing variants' settings are as before (their runs are reused)
    base = study.variant_config("/data", 3, 2, study.BASELINE, seed=7)
    assert base["augment"]["rawboost"] == study.study_config()["augment"]["rawboost"] and "pipeline" not in base["augment"]
    with pytest.raises(ValueError, match="banks"):
        study.variant_settings(_PIPELINE_VARIANTS[0], None)


def test_transform_table_is_the_interval_of_each_leafs_fractions_over_seeds() -> None:
    leaves = [("pipeline.steps[0].one_of.steps[0].reverb", "reverb"), ("pipeline.steps[0].one_of.steps[1].noise", "noise"),
              ("pipeline.steps[1].rawboost", "rawboost")]
    fractions = {"reverb": [0.25, 0.30, 0.35], "noise": [0.05, 0.05, 0.05], "rawboost": [0.12, 0.14, 0.16]}
    results = []
    for seed in range(3):
        results.append({"variant": study.BASELINE, "seed": seed, "conflict_fraction": 0.1})
        results.append({"variant": "dual, noise + reverb + RawBoost", "seed": seed, "conflict_fraction": [0.12, 0.14, 0.16][seed],
                        "conflict_by_transform": [
                            {"leaf": leaf, "transform": name, "steps": 10 + seed, "conflict_fraction": fractions[name][seed],
                             "weighted_conflict_fraction": fractions[name][seed] / 2} for leaf, name in leaves]})
    transforms = study.transform_frame(results)
    assert len(transforms) == 9 and study.transform_frame(results[:1]).empty
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "conflict_by_transform"} for r in results])
    lines = study.transform_table(frame, transforms).splitlines()
    half = stats.t.ppf(0.975, 2) * 0.05 / np.sqrt(3)  # reverb: mean 0.3, sd 0.05
    assert lines[2] == "| dual, noise + reverb + RawBoost | (whole model) | 3 | | 14.0 [9.0, 19.0] | |"
    assert lines[3] == (f"| dual, noise + reverb + RawBoost | reverb | 3 | 11 | 30.0 [{100 * (0.3 - half):.1f}, "
                        f"{100 * (0.3 + half):.1f}] | 15.0 [{50 * (0.3 - half):.1f}, {50 * (0.3 + half):.1f}] |")
    assert lines[4] == "| dual, noise + reverb + RawBoost | noise | 3 | 11 | 5.0 [5.0, 5.0] | 2.5 [2.5, 2.5] |"
    assert lines[5].split(" | ")[1:5] == ["rawboost", "3", "11", "14.0 [9.0, 19.0]"]
    assert len(lines) == 6  # no rows for the baseline, which has no per-transform record
    # where two leaves share a transform name, the rows name the leaf key
    twice = transforms.assign(transform="noise")
    assert "| pipeline.steps[0].one_of.steps[0].reverb |" in study.transform_table(frame, twice)


def test_a_subset_is_compared_and_corrected_over_its_own_variants() -> None:
    results = _results({"dual, MGDA": -0.05})
    subset = results[results["variant"].isin([study.BASELINE, "dual, MGDA", "dual, PCGrad"])]
    tests = study.paired_tests(subset, ["eer_eval"])
    assert tests["variant"].tolist() == ["dual, PCGrad", "dual, MGDA"]
    assert tests["p_holm"].tolist() == pytest.approx(paired.holm(tests["p"].to_numpy()))


def test_paired_differences_drop_a_seed_missing_on_either_side() -> None:
    runs = pd.DataFrame({"variant": ["b"] * 3 + ["v"] * 3, "seed": [0, 1, 2, 0, 1, 2],
                         "m": [0.1, 0.2, 0.3, 0.15, np.nan, 0.32]})
    row = paired.paired_differences(runs, "b", ["m"]).iloc[0]
    assert row["seeds"] == 2 and row["diff"] == pytest.approx(0.035)
    assert row["p"] == pytest.approx(stats.ttest_rel([0.15, 0.32], [0.1, 0.3]).pvalue)
