"""The conflict matrix of many-path runs (`dpda_analysis.pathmatrix`): planted rates recovered within
their intervals, the DuckDB counts equal to a plain pandas computation (supersession included),
runs of older schemas read as a 2 x 2 matrix, single-path runs as none."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import dpda_analysis as A
from dpda_analysis import schema as S
from dpda_analysis.conflict import step_counts, steps_interval
from dpda.telemetry.writer import TelemetryWriter
from synthetic_telemetry import planted_rate, trial_paths, write_synthetic_experiment
from telemetry_support import pandas_supersede, raw_frame

SPE = 40  # steps per epoch


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four trials of 5, 3, 4 and 2 paths, six epochs, the first restarted."""
    root = tmp_path_factory.mktemp("paths")
    write_synthetic_experiment(root, trials=4, steps=6 * SPE, layers=4, steps_per_epoch=SPE, restart_trials=1,
                               seed=11, path_counts=(5, 3, 4, 2))
    return root / "synthetic_exp"


def _coverage(frame: pd.DataFrame, planted: np.ndarray, level: float) -> np.ndarray:
    lo, hi = steps_interval(frame["conflicts"].to_numpy(float), frame["n"].to_numpy(float), level)
    return (lo <= planted) & (planted <= hi)


def test_planted_rates_are_recovered_within_their_intervals(experiment: Path) -> None:
    with A.open_telemetry(experiment) as tel:
        per_epoch = A.pair_conflicts(tel)
        per_layer = A.pair_conflicts(tel, layers=True)
        thirds = A.pair_conflicts(tel, per="range")
    assert sorted(per_epoch.groupby("trial_id")["n_paths"].max()) == [2, 3, 4, 5]
    assert len(per_epoch) == 6 * (10 + 3 + 6 + 1) and len(per_layer) == 4 * len(per_epoch)
    pair = [S.path_pairs(p).index((i, j)) for p, i, j in zip(per_epoch["n_paths"], per_epoch["i"], per_epoch["j"])]
    planted = planted_rate(np.asarray(pair), per_epoch["epoch_lo"].to_numpy())
    assert _coverage(per_epoch, planted, 0.999).all()
    assert _coverage(per_epoch, planted, 0.95).mean() >= 0.9
    assert np.corrcoef(per_epoch["fraction"], planted)[0, 1] > 0.9  # the structure, not just wide intervals
    layer_pair = [S.path_pairs(p).index((i, j)) for p, i, j in zip(per_layer["n_paths"], per_layer["i"], per_layer["j"])]
    planted_layer = planted_rate(np.asarray(layer_pair), per_layer["epoch_lo"].to_numpy(), per_layer["layer"].to_numpy(int))
    assert _coverage(per_layer, planted_layer, 0.999).mean() >= 0.995
    assert _coverage(per_layer, planted_layer, 0.95).mean() >= 0.9
    # thirds of six epochs: (1, 2), (3, 4), (5, 6); each span's planted rate is its epochs' mean, step-weighted
    assert sorted(set(zip(thirds["epoch_lo"], thirds["epoch_hi"]))) == [(1, 2), (3, 4), (5, 6)]
    for row in thirds.itertuples():
        mine = per_epoch[(per_epoch["trial_id"] == row.trial_id) & (per_epoch["i"] == row.i) & (per_epoch["j"] == row.j)
                         & per_epoch["epoch_lo"].between(row.epoch_lo, row.epoch_hi)]
        assert row.n == mine["n"].sum() and row.conflicts == mine["conflicts"].sum()


def _pandas_pairs(experiment: Path, table: str) -> pd.DataFrame:
    """Per (trial, epoch[, layer], i, j): counted, conflicting and the mean cosine, from the raw
    files with the supersession rule re-implemented (`telemetry_support`) and the conflict
    definition's function (`step_counts`)."""
    attempts = raw_frame(experiment, "attempts")
    steps = pandas_supersede(raw_frame(experiment, "steps"), attempts)
    rows = pandas_supersede(raw_frame(experiment, table), attempts)
    if table == "layers":
        rows = rows.merge(steps[["run_id", "trial_id", "step", "epoch"]], on=["run_id", "trial_id", "step"])
        rows["skipped"] = False
    paths = {(r, t, a): list(p) for r, t, a, p in zip(attempts["run_id"], attempts["trial_id"], attempts["attempt"],
                                                    attempts["paths"])}
    out = []
    keys = ["trial_id", "epoch"] + (["layer"] if table == "layers" else [])
    for key, grp in rows.groupby(keys):
        names = paths[(grp["run_id"].iloc[0], grp["trial_id"].iloc[0], grp["attempt"].iloc[0])]
        cos = np.array([np.full(len(S.path_pairs(len(names))), np.nan) if v is None else np.asarray(v, float)
                        for v in grp["path_cos"]])
        for k, (i, j) in enumerate(S.path_pairs(len(names))):
            c = cos[:, k]
            if table == "layers":  # per layer: the finite cosines count
                n, hit = int(np.isfinite(c).sum()), int((c < 0).sum())
            else:
                n, hit = step_counts(grp["skipped"], c < 0)
            ok = np.isfinite(c) & ~grp["skipped"].to_numpy(bool)
            out.append((*key, i, j, names[i], names[j], n, hit, c[ok].mean()))
    return pd.DataFrame(out, columns=[*keys, "i", "j", "path_i", "path_j", "n", "conflicts", "mean_cos"])


@pytest.mark.parametrize("table", ["steps", "layers"])
def test_duckdb_counts_equal_pandas_with_supersession(experiment: Path, table: str) -> None:
    want = _pandas_pairs(experiment, table)
    with A.open_telemetry(experiment) as tel:
        got = A.pair_conflicts(tel, layers=table == "layers")
    keys = ["trial_id", "epoch_lo"] + (["layer"] if table == "layers" else []) + ["i", "j"]
    got = got.sort_values(keys).reset_index(drop=True)
    want = want.sort_values(["trial_id", "epoch", *keys[2:]]).reset_index(drop=True)
    assert got["trial_id"].tolist() == want["trial_id"].tolist()
    assert got["epoch_lo"].tolist() == want["epoch"].tolist() and (got["epoch_lo"] == got["epoch_hi"]).all()
    for col in ("i", "j", "path_i", "path_j", "n", "conflicts"):
        assert got[col].tolist() == want[col].tolist(), col
    np.testing.assert_allclose(got["mean_cos"], want["mean_cos"], rtol=1e-6)
    # the restarted trial's superseded rows are out: the raw files hold more steps than counted
    raw = raw_frame(experiment, table)
    first = got[(got["trial_id"] == "00000") & (got["i"] == 0) & (got["j"] == 1)]
    assert first["n"].sum() < (raw["trial_id"] == "00000").sum() - 10


def test_matrix_views_and_ranking(experiment: Path) -> None:
    with A.open_telemetry(experiment) as tel:
        whole = A.pair_conflicts(tel, per="trial")
        five = whole[whole["trial_id"] == "00000"]
        matrix = A.conflict_matrix(tel, "synthetic_exp", "00000")
        cos = A.cosine_matrix(tel, "synthetic_exp", "00000", epochs=(3, 4), layer=2)
        span = A.pair_conflicts(tel, per="trial", epochs=(3, 4), layers=True, trials=[("synthetic_exp", "00000")])
        ranked = A.most_conflicting_pairs(tel)
        pooled = A.most_conflicting_pairs(tel, pooled=True)
    names = list(trial_paths(5))
    assert list(matrix.index) == names == list(matrix.columns)
    assert np.isnan(np.diag(matrix.to_numpy())).all()
    np.testing.assert_array_equal(matrix.to_numpy(), matrix.to_numpy().T)
    for row in five.itertuples():
        assert matrix.loc[row.path_i, row.path_j] == row.fraction
    mine = span[span["layer"] == 2]
    assert (mine["epoch_lo"] == 3).all() and (mine["epoch_hi"] == 4).all() and len(mine) == 10
    for row in mine.itertuples():
        assert cos.iloc[row.i, row.j] == pytest.approx(row.mean_cos)
    with pytest.raises(A.AnalysisError, match="select one"):
        A.pair_matrix(whole)
    # ranked per trial: fraction descending, rank 1..pairs; pooled sums each named pair's steps
    for trial_id, grp in ranked.groupby("trial_id"):
        assert grp["rank"].tolist() == list(range(1, len(grp) + 1))
        assert grp["fraction"].is_monotonic_decreasing
    assert pooled["fraction"].is_monotonic_decreasing and pooled["rank"].tolist() == list(range(1, len(pooled) + 1))
    orig_isd = whole[(whole["path_i"] == "orig") & (whole["path_j"] == "isd")]
    got = pooled.set_index(["path_i", "path_j"]).loc[("orig", "isd")]
    assert got["trials"] == 3 and got["n"] == orig_isd["n"].sum() and got["conflicts"] == orig_isd["conflicts"].sum()


_STAT = {"cos": 0.3, "norm_orig": 1.0, "norm_aug": 1.0, "conflict": False, "cos_update_orig": 1.0, "cos_update_aug": 1.0,
         "update_norm": 1.0, "loss_orig": 0.5, "loss_aug": 0.6, "skipped": False}


def test_older_runs_give_the_two_by_two_matrix_and_single_path_runs_none(tmp_path: Path) -> None:
    """A dual-path run without the many-path record (schema 5 without it, and the same files as
    schema 4 wrote them) reads as paths (orig, aug), its `cos` the pair: the matrix's numbers are
    `conflict_by`'s and `conflict_by_layer`'s. A run without an augmented path has no matrix."""
    write_synthetic_experiment(tmp_path, trials=2, steps=90, layers=3, steps_per_epoch=30, restart_trials=1, seed=5,
                               experiment="new")
    write_synthetic_experiment(tmp_path, trials=2, steps=90, layers=3, steps_per_epoch=30, restart_trials=1, seed=5,
                               experiment="old")
    added = [c for c, v in S.ADDED_IN.items() if v == 5]
    for part in glob.glob(str(tmp_path / "old" / "**" / S.PART_GLOB), recursive=True):
        data = pq.read_table(part)
        data = data.drop_columns([c for c in added if c in data.column_names])
        pq.write_table(data.replace_schema_metadata({**data.schema.metadata, S.META_VERSION_KEY: b"4"}), part)
    with TelemetryWriter(tmp_path / "single", "single", "t", 0, ["w"], augment_mode="none", paths=[]) as writer:
        writer.log_step(0, 1, {**_STAT, "layer_cos": [0.1], "layer_norm_orig": [1.0], "layer_norm_aug": [1.0]}, 0.1)
    results = {}
    for name in ("new", "old"):
        with A.open_telemetry(tmp_path / name) as tel:
            pairs, layers = A.pair_conflicts(tel), A.pair_conflicts(tel, per="trial", layers=True)
            by_epoch, by_layer = A.conflict_by_epoch(tel), A.conflict_by_layer(tel)
        assert set(zip(pairs["path_i"], pairs["path_j"])) == {("orig", "aug")} and (pairs["n_paths"] == 2).all()
        assert pairs["n"].tolist() == by_epoch["steps"].tolist()
        assert pairs["conflicts"].tolist() == by_epoch["conflict_steps"].tolist()
        np.testing.assert_allclose(pairs["lo"], by_epoch["conflict_low"])
        np.testing.assert_allclose(pairs["mean_cos"], by_epoch["mean_cos"])
        assert layers["n"].tolist() == by_layer["rows"].tolist()
        np.testing.assert_allclose(layers["fraction"], by_layer["conflict_fraction"])
        results[name] = pairs
    pd.testing.assert_frame_equal(results["new"].drop(columns="run_id"), results["old"].drop(columns="run_id"))
    with A.open_telemetry(tmp_path) as tel:  # the versions together, and the single-path run
        both = A.pair_conflicts(tel)
        assert A.conflict_matrix(tel, "single", "t").empty
        assert A.conflict_matrix(tel, "old", "00000").shape == (2, 2)
    assert len(both) == 2 * len(results["new"]) and set(both["run_id"]) == {"new", "old"}
