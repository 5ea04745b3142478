"""dpda_analysis: supersession, conflict fractions against direct pandas, discovery, isolation."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dpda_analysis as A
from dpda_analysis import schema as S
from dpda.telemetry import TelemetryWriter
from dpda.telemetry.tally import EpochTally
from synthetic_telemetry import write_synthetic_experiment
from telemetry_support import pandas_supersede, raw_frame

NAMES = ["a.weight", "b.weight"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("exp")
    write_synthetic_experiment(root, trials=5, steps=200, layers=6, steps_per_epoch=50, restart_trials=2, seed=7)
    return root / "synthetic_exp"


def stats(cos: float, layer_cos: float) -> dict:
    return {"loss_orig": 1.0, "loss_aug": 1.0, "cos": cos, "norm_orig": 1.0, "norm_aug": 1.0,
            "conflict": cos < 0, "cos_update_orig": 1.0, "cos_update_aug": 1.0, "update_norm": 1.0,
            "skipped": False, "layer_cos": [layer_cos] * 2, "layer_norm_orig": [1.0] * 2,
            "layer_norm_aug": [1.0] * 2}


def run_attempt(run_dir: Path, attempt: int, first: int, last: int, resumed: int | None, cos: float) -> None:
    with TelemetryWriter(run_dir, "run", "t", attempt, NAMES, resumed_from_step=resumed, flush_every=16) as w:
        tally = EpochTally()
        for step in range(first, last):
            w.log_step(step, step // 10 + 1, stats(cos, cos), 0.1)
            tally.add(stats(cos, cos))
            if step % 10 == 9:
                w.log_epoch(step // 10 + 1, step, tally=tally, dev_eer=cos + 1)
                tally = EpochTally()


@pytest.mark.parametrize("shared_dir", [False, True], ids=["own-dir", "shared-dir"])
def test_supersession_after_restarts(tmp_path: Path, shared_dir: bool) -> None:
    if shared_dir:  # a second trial writing into the same dir takes the per-row filter path
        with TelemetryWriter(tmp_path, "run", "other", 0, NAMES) as w:
            for step in range(200):
                w.log_step(step, 1, stats(0.9, 0.9), 0.1)
    run_attempt(tmp_path, 0, 0, 100, None, 0.5)   # crashed at step 100, checkpoint at 60
    run_attempt(tmp_path, 1, 60, 85, 60, -0.25)   # crashed at 85, checkpoint at 80
    run_attempt(tmp_path, 2, 80, 150, 80, -0.75)  # finished
    with A.open_telemetry(tmp_path) as tel:
        steps = tel.sql("SELECT step, attempt, cos FROM steps WHERE trial_id = 't' ORDER BY step")
        layers = tel.sql("SELECT step, attempt, count(*) AS n, min(cos) AS cos FROM layers "
                         "WHERE trial_id = 't' GROUP BY ALL ORDER BY step")
        epochs = tel.sql("SELECT epoch, attempt, dev_eer FROM epochs WHERE trial_id = 't' ORDER BY epoch")
        overall = A.conflict_by_trial(tel).set_index("trial_id").loc["t"]
        assert tel.sql("SELECT count(*) AS n FROM steps WHERE trial_id = 'other'")["n"].iloc[0] == 200 * shared_dir
    assert steps["step"].tolist() == list(range(150))
    expect_attempt = np.where(np.arange(150) < 60, 0, np.where(np.arange(150) < 80, 1, 2))
    np.testing.assert_array_equal(steps["attempt"], expect_attempt)
    np.testing.assert_array_equal(steps["cos"], np.choose(expect_attempt, [0.5, -0.25, -0.75]))
    np.testing.assert_array_equal(layers["attempt"], expect_attempt)
    assert (layers["n"] == 2).all()
    np.testing.assert_allclose(layers["cos"], np.choose(expect_attempt, [0.5, -0.25, -0.75]))
    # Epoch 7 (steps 60-69) and 8 come from attempt 1, epochs 9+ from attempt 2, once each.
    assert epochs["epoch"].tolist() == list(range(1, 16))
    np.testing.assert_array_equal(epochs["attempt"], [0] * 6 + [1, 1] + [2] * 7)
    assert overall["steps"] == 150 and overall["conflict_fraction"] == pytest.approx(90 / 150)


def test_conflict_fractions_match_pandas(experiment: Path) -> None:
    steps = pandas_supersede(raw_frame(experiment, "steps"), raw_frame(experiment, "attempts"))
    layers = pandas_supersede(raw_frame(experiment, "layers"), raw_frame(experiment, "attempts"))
    ok = steps[~steps["skipped"]]
    with A.open_telemetry(experiment) as tel:
        overall = A.conflict_fraction(tel).iloc[0]
        by_trial = A.conflict_by_trial(tel).set_index("trial_id")
        by_rule = A.conflict_by_rule(tel).set_index("rule")
        by_algo = A.conflict_by_rawboost_algo(tel).set_index("rawboost_algo")
        by_epoch = A.conflict_by_epoch(tel).set_index(["trial_id", "epoch"])
        by_layer = A.conflict_by_layer(tel).set_index(["trial_id", "layer"])
        pooled = A.conflict_by_layer(tel, per_trial=False).set_index("layer")
    assert overall["steps"] == len(ok) == 5 * 200 - steps["skipped"].sum()
    assert overall["conflict_fraction"] == pytest.approx(ok["conflict"].mean())
    pd.testing.assert_series_equal(by_trial["conflict_fraction"], ok.groupby("trial_id")["conflict"].mean(),
                                   check_names=False)
    pd.testing.assert_series_equal(by_rule["conflict_fraction"], ok.groupby("rule")["conflict"].mean(),
                                   check_names=False)
    pd.testing.assert_series_equal(by_algo["conflict_fraction"], ok.groupby("rawboost_algo")["conflict"].mean(),
                                   check_names=False, check_index_type=False)
    pd.testing.assert_series_equal(by_epoch["conflict_fraction"],
                                   ok.groupby(["trial_id", "epoch"])["conflict"].mean(), check_names=False,
                                   check_index_type=False)
    finite = layers[np.isfinite(layers["cos"])]
    ref = finite.assign(c=finite["cos"] < 0).groupby(["trial_id", "layer"])
    pd.testing.assert_series_equal(by_layer["conflict_fraction"], ref["c"].mean(), check_names=False,
                                   check_index_type=False)
    np.testing.assert_allclose(by_layer["mean_cos"], ref["cos"].mean(), rtol=1e-6)
    # a skipped step's layer rows are null: each layer counts the trial's non-skipped steps
    per_trial = by_layer["rows"].groupby(level=0).sum()
    pd.testing.assert_series_equal(per_trial, ok.groupby("trial_id").size() * 6, check_names=False,
                                   check_index_type=False, check_dtype=False)
    np.testing.assert_allclose(pooled["conflict_fraction"],
                               finite.assign(c=finite["cos"] < 0).groupby("layer")["c"].mean())
    assert by_layer["name"].iloc[0] == "ssl.encoder.layers.0.attention.q_proj.weight"


def test_histogram_heatmap_and_trial_summary(experiment: Path) -> None:
    steps = pandas_supersede(raw_frame(experiment, "steps"), raw_frame(experiment, "attempts"))
    ok = steps[~steps["skipped"]]
    with A.open_telemetry(experiment) as tel:
        hist = A.cosine_histogram(tel, by="rule", bins=20)
        heat = A.layer_heatmap(tel, "synthetic_exp", "00000", bins=7)
        summary = A.trial_summary(tel).set_index("trial_id")
        epochs = tel.sql("SELECT trial_id, epoch, dev_eer FROM epochs")
        table = A.comparison_table(tel)
    for rule, grp in ok.groupby("rule"):
        counts, _ = np.histogram(grp["cos"].clip(-1, 1), bins=20, range=(-1, 1))
        got = hist[hist["group"] == rule].set_index("bin")["count"].reindex(range(20), fill_value=0)
        np.testing.assert_array_equal(got.to_numpy(), counts)
    assert hist.groupby("group")["fraction"].sum().round(12).eq(1).all()
    assert heat["rows"].sum() == 200 * 6 and heat["bin"].max() == 6
    assert heat.groupby("bin")["step_lo"].first().is_monotonic_increasing
    for trial_id, grp in epochs.groupby("trial_id"):
        best = grp.sort_values(["dev_eer", "epoch"]).iloc[0]
        assert summary.loc[trial_id, "best_dev_eer"] == pytest.approx(best["dev_eer"])
        assert summary.loc[trial_id, "best_epoch"] == best["epoch"]
        assert summary.loc[trial_id, "epochs_to_best"] == best["epoch"]  # epochs are 1-based
    assert summary.loc["00000", "attempts"] == 2 and summary.loc["00002", "attempts"] == 1
    assert summary.loc["00001", "param.rule"] == summary.loc["00001", "rule"] == "pcgrad"
    assert table["rank"].tolist() == list(range(1, 6)) and table["model_dev_eer"].is_monotonic_increasing
    assert (summary["status"] == "completed").all()


def test_tune_trial_without_telemetry_uses_result_json(experiment: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "exp"
    shutil.copytree(experiment, root)
    dead = root / "train_fn_dead_9"
    dead.mkdir()
    (dead / "params.json").write_text(json.dumps({"train_loop_config": {"rule": "mgda", "lr": 1e-3}}))
    lines = [{"trial_id": "dead9", "training_iteration": i + 1, "dev_eer": e} for i, e in enumerate([0.3, 0.2, 0.25])]
    (dead / "result.json").write_text("\n".join(json.dumps(x) for x in lines) + '\n{"truncated')
    with A.open_telemetry(root) as tel:
        summary = A.trial_summary(tel).set_index("trial_id")
    row = summary.loc["dead9"]
    assert not row["has_telemetry"] and row["param.rule"] == "mgda"
    assert row["best_dev_eer"] == pytest.approx(0.2) and row["best_epoch"] == 2 and pd.isna(row["conflict_fraction"])
    assert row["status"] == "stopped early"  # a Tune trial without the Trainer's summary.json


def test_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(A.AnalysisError, match="no such file"):
        A.open_telemetry(tmp_path / "missing")
    with pytest.raises(A.AnalysisError, match="no telemetry"):
        A.open_telemetry(tmp_path)
    run_attempt(tmp_path / "new", 0, 0, 5, None, 0.1)
    part = sorted(glob.glob(str(tmp_path / "new/telemetry/steps/attempt-0/part-*.parquet")))[0]
    table = pq.read_table(part)
    meta = {**table.schema.metadata, S.META_VERSION_KEY: str(S.SCHEMA_VERSION + 1).encode()}
    pq.write_table(table.replace_schema_metadata(meta), part)
    with pytest.raises(A.AnalysisError, match="newer than this reader"):
        A.open_telemetry(tmp_path / "new")
    pq.write_table(table.replace_schema_metadata({}), part)
    with pytest.raises(A.AnalysisError, match="not dpda telemetry"):
        A.open_telemetry(tmp_path / "new")
    with pytest.raises(A.AnalysisError, match="no column"):
        pq.write_table(table, part)
        with A.open_telemetry(tmp_path / "new") as tel:
            A.conflict_by(tel, "nope")


def test_analysis_imports_and_works_without_torch_and_ray(experiment: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys

        class Blocked:  # as if torch and Ray were not installed (not a None entry in sys.modules,
            def find_spec(self, name, path=None, target=None):  # which scipy's probes trip on)
                if name.split(".")[0] in ("torch", "ray"):
                    raise ImportError("blocked: " + name)

        sys.meta_path.insert(0, Blocked())
        import dpda_analysis as A
        from dpda_analysis.report import write_report
        import dpda.commands.report as cmd
        with A.open_telemetry({str(experiment)!r}) as tel:
            assert A.conflict_fraction(tel)["steps"].iloc[0] > 0
            A.comparison_table(tel)
        write_report({str(experiment)!r}, {str(tmp_path / "r.html")!r})
        loaded = [m for m in sys.modules if m.split(".")[0] in ("torch", "ray")]
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def _trial(run_dir: Path, trial_id: str, rule: str, mode: str, attempts: int = 1) -> None:
    """A few steps of one trial (a restart at step 4 when `attempts` is 2) as the Trainer writes them."""
    for attempt in range(attempts):
        with TelemetryWriter(run_dir, "exp", trial_id, attempt, NAMES, rule=rule, augment_mode=mode,
                             resumed_from_step=4 if attempt else None) as w:
            for step in range(4 * attempt, 8):
                w.log_step(step, 1, stats(-0.5 if step % 2 else 0.5, 0.1), 0.1)


def _as_schema_2(run_dir: Path, attempt: int) -> None:
    """Rewrite one attempt's steps and attempts parts as schema 2 wrote them: no augment_mode
    column, the mode in `rule` for a run that was not dual-path."""
    for table in ("steps", "attempts"):
        for part in glob.glob(str(run_dir / "telemetry" / table / f"attempt-{attempt}" / S.PART_GLOB)):
            data = pq.read_table(part)
            mode = data.column("augment_mode").to_pylist()[0]
            rules = data.column("rule").to_pylist()
            old = pa.array(rules if mode == "dual" else [mode] * len(rules))
            data = data.set_column(data.schema.get_field_index("rule"), data.schema.field("rule"),
                                   old.dictionary_encode() if table == "steps" else old)
            data = data.drop_columns(["augment_mode"])
            pq.write_table(data.replace_schema_metadata({**data.schema.metadata, S.META_VERSION_KEY: b"2"}), part)


def test_variant_keeps_augment_modes_apart_from_rules(tmp_path: Path) -> None:
    """Schema 3: a run without augmentation and a dual-path run with the `none` rule (which schema
    2 could not tell apart) are separate variants in every grouping; rule holds only the rule."""
    for trial_id, rule, mode in (("a", "pcgrad", "dual"), ("b", "none", "dual"), ("c", "pcgrad", "none"),
                                 ("d", "gradvac", "augmented")):
        _trial(tmp_path / trial_id, trial_id, rule, mode)
    with A.open_telemetry(tmp_path) as tel:
        trials = tel.trials.set_index("trial_id")[["rule", "augment_mode", "variant"]]
        steps = tel.sql("SELECT DISTINCT trial_id, rule, augment_mode, variant FROM steps ORDER BY trial_id")
        by_variant = A.conflict_by(tel, "variant").set_index("variant")["trials"].to_dict()
        table = A.comparison_table(tel).set_index("trial_id")["variant"].to_dict()
    want = {"a": ["pcgrad", "dual", "pcgrad"], "b": ["none", "dual", "none"],
            "c": ["pcgrad", "none", "no augmentation"], "d": ["gradvac", "augmented", "augmented"]}
    assert trials.to_dict("index") == {k: dict(zip(["rule", "augment_mode", "variant"], v)) for k, v in want.items()}
    assert steps.set_index("trial_id").values.tolist() == list(want.values())
    assert by_variant == {"pcgrad": 1, "none": 1, "no augmentation": 1, "augmented": 1}
    assert table == {k: v[2] for k, v in want.items()}


def test_schema_2_parts_read_with_the_mode_derived_from_their_rule(tmp_path: Path) -> None:
    """Old runs still read, next to new ones and within one run across a restart: an
    augmented-only run's rule `augmented` becomes its mode (rule `none`), any other rule value a
    dual-path rule (a schema-2 run without augmentation wrote `none`: it reads as the dual `none`)."""
    _trial(tmp_path / "a", "a", "pcgrad", "dual")
    _trial(tmp_path / "c", "c", "pcgrad", "none")
    _trial(tmp_path / "d", "d", "gradvac", "augmented", attempts=2)
    _as_schema_2(tmp_path / "a", 0)
    _as_schema_2(tmp_path / "c", 0)
    _as_schema_2(tmp_path / "d", 0)  # attempt 1 stays schema 3: one run of both versions
    with A.open_telemetry(tmp_path) as tel:
        steps = tel.sql("SELECT trial_id, attempt, rule, augment_mode, variant, count(*) AS n FROM steps "
                        "GROUP BY ALL ORDER BY ALL").values.tolist()
        attempts = tel.sql("SELECT trial_id, attempt, rule, augment_mode FROM attempts ORDER BY ALL").values.tolist()
        variants = tel.trials.set_index("trial_id")["variant"].to_dict()
        assert A.conflict_by(tel, "variant")["trials"].sum() == 3
    assert steps == [["a", 0, "pcgrad", "dual", "pcgrad", 8], ["c", 0, "none", "dual", "none", 8],
                     ["d", 0, "none", "augmented", "augmented", 4], ["d", 1, "gradvac", "augmented", "augmented", 4]]
    assert attempts == [["a", 0, "pcgrad", "dual"], ["c", 0, "none", "dual"], ["d", 0, "none", "augmented"],
                        ["d", 1, "gradvac", "augmented"]]
    assert variants == {"a": "pcgrad", "c": "none", "d": "augmented"}


def test_a_schema_3_part_without_augment_mode_is_refused(tmp_path: Path) -> None:
    _trial(tmp_path, "a", "pcgrad", "dual")
    part = sorted(glob.glob(str(tmp_path / "telemetry/steps/attempt-0" / S.PART_GLOB)))[0]
    pq.write_table(pq.read_table(part).drop_columns(["augment_mode"]), part)
    with pytest.raises(A.AnalysisError, match="no column 'augment_mode'"):
        A.open_telemetry(tmp_path)
