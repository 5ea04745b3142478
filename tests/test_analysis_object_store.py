"""dpda_analysis on object storage: a Tune-style experiment (restarted trials included) copied
to an S3 server on 127.0.0.1 (moto's, spoken to over HTTP by pyarrow's S3 client) reads the same
through `open_telemetry("s3://...")` as from the local folder: every view, the trials table and
the queries. Only the trials' `run_dir` differs (the path on each filesystem)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

import dpda_analysis as A
from synthetic_telemetry import write_synthetic_experiment

from object_store import LocalS3, bucket_store

BUCKET = "dpda-analysis"


@pytest.fixture(scope="module")
def store():
    with bucket_store(BUCKET) as s3:
        yield s3


@pytest.fixture(scope="module")
def experiment(store: LocalS3, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("exp")
    write_synthetic_experiment(root, trials=4, steps=120, layers=4, steps_per_epoch=30, restart_trials=2, seed=3)
    local = root / "synthetic_exp"
    pafs.copy_files(str(local), f"{BUCKET}/runs/synthetic_exp", destination_filesystem=store.filesystem(), use_threads=False)
    return local, store.uri(f"{BUCKET}/runs/synthetic_exp")


def _same(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> None:
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_like=True)


def test_open_telemetry_on_s3_equals_local(experiment: tuple[Path, str]) -> None:
    local, uri = experiment
    with A.open_telemetry(local) as here, A.open_telemetry(uri) as there:
        assert there.location.protocol is not None and not there.location.is_local
        assert len(there.runs) == len(here.runs) == 4
        for view, keys in (("steps", ["trial_id", "step"]), ("layers", ["trial_id", "step", "layer"]),
                           ("epochs", ["trial_id", "epoch"]), ("attempts", ["trial_id", "attempt"]),
                           ("layer_names", ["trial_id", "layer"])):
            _same(here.sql(f"select * from {view}"), there.sql(f"select * from {view}"), keys)
        # supersession happened: the restarted trials' raw rows outnumber their steps
        assert int(there.sql("select count(*) n from raw_steps")["n"][0]) > int(there.sql("select count(*) n from steps")["n"][0])
        _same(here.trials.drop(columns="run_dir"), there.trials.drop(columns="run_dir"), ["trial_id"])
        assert all(d.startswith(f"{BUCKET}/runs/synthetic_exp/") for d in there.trials["run_dir"])
        _same(here.tune_results, there.tune_results, ["trial_id", "epoch"])
        _same(A.conflict_by_trial(here), A.conflict_by_trial(there), ["trial_id"])
        _same(A.conflict_by_layer(here), A.conflict_by_layer(there), ["trial_id", "layer"])
        mine, theirs = A.summary(here), A.summary(there)
        assert mine.pop("runs_dir") != theirs.pop("runs_dir")  # the path on each filesystem
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():  # DuckDB sums in parallel: floats agree to the last bits
            assert theirs[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), key


def test_one_run_and_a_missing_path_on_s3(experiment: tuple[Path, str], store: LocalS3) -> None:
    local, uri = experiment
    run = min(p.name for p in local.iterdir() if p.is_dir())
    base, query = uri.split("?", 1)
    with A.open_telemetry(local / run) as here, A.open_telemetry(f"{base}/{run}?{query}") as there:
        _same(here.sql("select * from steps"), there.sql("select * from steps"), ["step"])
    with pytest.raises(A.AnalysisError, match="no such file or directory"):
        A.open_telemetry(f"{base}/nothing-here?{query}")
