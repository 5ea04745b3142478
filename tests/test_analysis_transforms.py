"""Conflict fraction per transform and per combination of transforms (schema 4's applied-transforms
record): against an independent pandas reading, against hand-counted numbers, and for runs that
have no record (older schemas, RawBoost telemetry of schema 3)."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy import stats as st

import dpda_analysis as A
from dpda_analysis import schema as S
from dpda_analysis.conflict import received_counts
from dpda.telemetry.writer import TelemetryWriter
from synthetic_telemetry import PIPELINE, write_synthetic_experiment
from telemetry_support import pandas_supersede, raw_frame

_STAT = {"cos": 0.5, "norm_orig": 1.0, "norm_aug": 1.0, "conflict": False, "cos_update_orig": 1.0,
         "cos_update_aug": 1.0, "update_norm": 1.0, "loss_orig": 0.5, "loss_aug": 0.6, "skipped": False,
         "layer_cos": [], "layer_norm_orig": [], "layer_norm_aug": []}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("transforms")
    write_synthetic_experiment(root, trials=4, steps=120, layers=3, steps_per_epoch=30, restart_trials=1,
                               seed=11, leaves=PIPELINE)
    return root / "synthetic_exp"


def _long(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Independent reading: resolved steps (plain pandas + the supersession rule), one row per
    (step, leaf) with its leaf name from the attempt's row, and one per (step, mask value)."""
    attempts = raw_frame(root, "attempts")
    steps = pandas_supersede(raw_frame(root, "steps"), attempts)
    leaves = {(r.run_id, r.trial_id, r.attempt): list(r.augment_leaves) for r in attempts.itertuples()}
    per_leaf, per_combo = [], []
    for r in steps.itertuples():
        names = leaves[(r.run_id, r.trial_id, r.attempt)]
        for j, count in enumerate(r.augment_counts):
            per_leaf.append((r.run_id, r.trial_id, names[j], int(count), r.skipped, r.conflict))
        for combo in r.augment_combos:
            label = " + ".join(n for j, n in enumerate(names) if combo["mask"] >> j & 1) or "(none)"
            per_combo.append((r.run_id, r.trial_id, label, int(combo["n"]), r.skipped, r.conflict))
    cols = ["run_id", "trial_id", "item", "received", "skipped", "conflict"]
    return pd.DataFrame(per_leaf, columns=cols), pd.DataFrame(per_combo, columns=cols)


def _reference(long: pd.DataFrame) -> pd.DataFrame:
    """Per (trial, item): steps where it was received and not skipped, their conflicts, the
    utterance-weighted fraction, and scipy's Wilson interval."""
    rows = []
    for (run_id, trial_id, item), g in long.groupby(["run_id", "trial_id", "item"]):
        ok = g[~g["skipped"] & (g["received"] > 0)]
        k, n = int(ok["conflict"].sum()), len(ok)
        ci = st.binomtest(k, n).proportion_ci(method="wilson")
        kept = g[~g["skipped"]]
        weighted = (kept["received"] * kept["conflict"]).sum() / kept["received"].sum()
        rows.append((run_id, trial_id, item, n, k, k / n, ci.low, ci.high, weighted))
    return pd.DataFrame(rows, columns=["run_id", "trial_id", "item", "steps", "conflict_steps", "conflict_fraction",
                                       "conflict_low", "conflict_high", "weighted_conflict_fraction"])


@pytest.mark.parametrize("kind", ["transform", "combination"])
def test_per_transform_and_combination_fractions_equal_pandas(experiment: Path, kind: str) -> None:
    per_leaf, per_combo = _long(experiment.parent)
    ref = _reference(per_leaf if kind == "transform" else per_combo).sort_values(["run_id", "trial_id", "item"])
    with A.open_telemetry(experiment) as tel:
        got = (A.conflict_by_transform(tel, by="trial") if kind == "transform"
               else A.conflict_by_combination(tel, by="trial"))
    got = got.rename(columns={"leaf" if kind == "transform" else "combination": "item"})
    got = got.sort_values(["run_id", "trial_id", "item"]).reset_index(drop=True)
    assert len(got) == len(ref) >= 4 * len(PIPELINE)
    for col in ref.columns[:3]:
        assert got[col].tolist() == ref[col].tolist()
    for col in ref.columns[3:]:
        np.testing.assert_allclose(got[col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-9, err_msg=col)
    if kind == "transform":
        assert set(got["transform"]) == {"codec", "speed", "rawboost", "gain"}
        assert got.groupby("item")["bit"].first().to_dict() == {leaf: j for j, leaf in enumerate(PIPELINE)}


def test_pooled_by_variant_adds_up_the_trials(experiment: Path) -> None:
    with A.open_telemetry(experiment) as tel:
        per_trial = A.conflict_by_transform(tel, by="trial").merge(tel.trials[["run_id", "trial_id", "variant"]])
        pooled = A.conflict_by_transform(tel).set_index(["variant", "leaf"])
    sums = per_trial.groupby(["variant", "leaf"])[["steps", "conflict_steps", "received_utterances"]].sum()
    pd.testing.assert_frame_equal(pooled[sums.columns].sort_index(), sums.sort_index(), check_dtype=False)
    assert (pooled["trials"] == per_trial.groupby(["variant", "leaf"]).size()).all()


def test_hand_counted_conflicts(tmp_path: Path) -> None:
    """Four steps of a two-leaf pipeline, the conflicts and receipts chosen by hand; a skipped
    step counts for nothing, a step where nobody received a leaf does not count for it."""
    records = [  # (conflict, skipped, counts [a, b], combos {mask: n})
        (True, False, [3, 0], {0b01: 3, 0b00: 1}),
        (False, False, [1, 4], {0b11: 1, 0b10: 3}),
        (True, False, [0, 2], {0b10: 2, 0b00: 2}),
        (True, True, [4, 4], {0b11: 4}),
        (True, False, [0, 1], {0b10: 1, 0b00: 3}),
    ]
    with TelemetryWriter(tmp_path, "r", "t", 0, [], augment_leaves=["a", "pipeline.b"]) as writer:
        for step, (conflict, skipped, counts, combos) in enumerate(records):
            writer.log_step(step, 1, {**_STAT, "conflict": conflict, "skipped": skipped, "augment_counts": counts,
                                      "augment_combos": [{"mask": m, "n": n} for m, n in combos.items()]}, 0.1)
    with A.open_telemetry(tmp_path) as tel:
        per = A.conflict_by_transform(tel, by="trial").set_index("leaf")
        combos = A.conflict_by_combination(tel, by="trial").set_index("combination")
    # a: steps 0, 1 (step 3 skipped): 1 conflict of 2; weighted (3 * 1 + 1 * 0) / 4
    # b: steps 1, 2, 4: 2 conflicts of 3; weighted (4 * 0 + 2 + 1) / 7
    assert per.loc["a", ["steps", "conflict_steps"]].tolist() == [2, 1]
    assert per.loc["pipeline.b", ["steps", "conflict_steps"]].tolist() == [3, 2]
    assert per["weighted_conflict_fraction"].tolist() == pytest.approx([3 / 4, 3 / 7])
    assert per["transform"].tolist() == ["a", "b"]
    assert received_counts([False, False, False, True, False], [True, False, True, True, True], [0, 4, 2, 4, 1]) \
        == (3, 2, 7, 3)
    assert combos.loc["(none)", ["steps", "conflict_steps"]].tolist() == [3, 3]
    assert combos.loc["pipeline.b", ["steps", "conflict_steps"]].tolist() == [3, 2]
    assert combos.loc["a", ["steps", "conflict_steps"]].tolist() == [1, 1]
    assert combos.loc["a + pipeline.b", ["steps", "conflict_steps", "mask"]].tolist() == [1, 0, 3]


def test_runs_without_the_record_give_no_rows(tmp_path: Path) -> None:
    """Schema-3 parts (no applied-transforms columns) read as nulls, beside schema-4 runs whose
    numbers they leave unchanged; a run without a dual path (empty lists) adds no rows."""
    root = tmp_path / "both"
    write_synthetic_experiment(root, trials=2, steps=60, layers=3, steps_per_epoch=30, restart_trials=1, seed=2,
                               experiment="new_exp", leaves=PIPELINE)
    with A.open_telemetry(root / "new_exp") as tel:
        want = A.conflict_by_transform(tel, by="trial")
    assert len(want) == 2 * len(PIPELINE)
    write_synthetic_experiment(root, trials=2, steps=60, layers=3, steps_per_epoch=30, restart_trials=1, seed=2,
                               experiment="old_exp", leaves=PIPELINE)
    added = [c for c, v in S.ADDED_IN.items() if v == 4]
    for part in glob.glob(str(root / "old_exp" / "**" / S.PART_GLOB), recursive=True):
        data = pq.read_table(part)
        data = data.drop_columns([c for c in added if c in data.column_names])
        pq.write_table(data.replace_schema_metadata({**data.schema.metadata, S.META_VERSION_KEY: b"3"}), part)
    with TelemetryWriter(root / "none", "n", "t", 0, [], augment_mode="none", augment_leaves=[]) as writer:
        writer.log_step(0, 1, {**_STAT, "augment_counts": [], "augment_combos": []}, 0.1)
    with A.open_telemetry(root / "old_exp") as tel:
        assert A.conflict_by_transform(tel).empty and A.conflict_by_combination(tel).empty
        assert tel.sql("SELECT count(*) AS n FROM steps WHERE augment_counts IS NULL AND augment_combos IS NULL"
                       )["n"].iloc[0] == 120
        assert tel.sql("SELECT count(*) AS n FROM attempts WHERE augment_leaves IS NULL")["n"].iloc[0] == 3
    with A.open_telemetry(root) as tel:
        pd.testing.assert_frame_equal(A.conflict_by_transform(tel, by="trial"), want)
        assert tel.sql("SELECT augment_counts FROM steps WHERE run_id = 'n'")["augment_counts"].iloc[0].tolist() == []


def test_export_carries_the_applied_transforms(experiment: Path, tmp_path: Path) -> None:
    from dpda.cli import main as cli_main

    attempts = raw_frame(experiment, "attempts")
    want = pandas_supersede(raw_frame(experiment, "steps"), attempts).sort_values(["run_id", "trial_id", "step"])
    assert cli_main(["export", str(experiment), "-o", str(tmp_path / "s.parquet")]) == 0
    got = pd.read_parquet(tmp_path / "s.parquet")
    for key in S.AUGMENT_STAT_KEYS:
        assert [list(v) for v in got[key]] == [list(v) for v in want[key]], key
    assert cli_main(["export", str(experiment), "-o", str(tmp_path / "a.parquet"), "--table", "attempts"]) == 0
    leaves = pd.read_parquet(tmp_path / "a.parquet")["augment_leaves"]
    assert [list(v) for v in leaves] == [list(PIPELINE)] * len(attempts)
