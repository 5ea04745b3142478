"""The telemetry as other tools read it: every mainstream Parquet reader opens a run's tables
with no options and gets the schema's types; `dpda export` writes exactly the resolved view; the
one conflict-fraction definition agrees with its SQL form and with the training loop's tally."""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import dpda_analysis as A
from dpda.cli import main as cli_main
from synthetic_telemetry import write_synthetic_experiment
from dpda.telemetry.tally import EpochTally
from dpda_analysis import schema as S
from dpda_analysis.conflict import STEP_COUNTS_SQL, conflict_fraction, step_counts
from telemetry_support import pandas_supersede, raw_frame, resolved_epochs

# What each reader calls the schema's types (dictionary-encoded ids read as categoricals/strings).
_PANDAS = {pa.int16(): "int16", pa.int32(): "int32", pa.int64(): "int64", pa.float32(): "float32",
           pa.float64(): "float64", pa.bool_(): "bool", pa.string(): ("object", "str", "string")}
_POLARS = {pa.int16(): pl.Int16, pa.int32(): pl.Int32, pa.int64(): pl.Int64, pa.float32(): pl.Float32,
           pa.float64(): pl.Float64, pa.bool_(): pl.Boolean, pa.string(): pl.String}
_DUCKDB = {pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float32(): "FLOAT",
           pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN", pa.string(): "VARCHAR"}
# the applied-transforms lists (schema 4): pandas holds them as objects (arrays of ints / dicts)
_LISTS = {pa.list_(pa.int32()): ("object", pl.List(pl.Int32), "INTEGER[]"),
          pa.list_(pa.string()): ("object", pl.List(pl.String), "VARCHAR[]"),
          pa.list_(S.AUGMENT_COMBO): ("object", pl.List(pl.Struct({"mask": pl.Int64, "n": pl.Int32})),
                                      "STRUCT(mask BIGINT, n INTEGER)[]"),
          # the many-path lists (schema 5)
          pa.list_(pa.float64()): ("object", pl.List(pl.Float64), "DOUBLE[]"),
          pa.list_(pa.float32()): ("object", pl.List(pl.Float32), "FLOAT[]")}
for _type, (_pd, _pl, _duck) in _LISTS.items():
    _PANDAS[_type], _POLARS[_type], _DUCKDB[_type] = _pd, _pl, _duck


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("interop")
    write_synthetic_experiment(root, trials=3, steps=120, layers=4, steps_per_epoch=30, restart_trials=2, seed=5)
    return root / "synthetic_exp"


def _part_rows(table_dir: str) -> int:
    return sum(pq.read_metadata(f).num_rows for f in glob.glob(f"{table_dir}/{S.ATTEMPT_GLOB}/{S.PART_GLOB}"))


@pytest.mark.parametrize("table", list(S.TABLES))
def test_every_reader_opens_a_run_table_without_options(experiment: Path, table: str) -> None:
    run = min(experiment.glob("train_fn_00000_*"))  # restarted: two attempt directories
    table_dir = str(run / "telemetry" / table)
    assert len(glob.glob(f"{table_dir}/{S.ATTEMPT_GLOB}")) == 2
    rows = _part_rows(table_dir)
    schema = S.TABLES[table]
    frames = {
        "pandas": pd.read_parquet(table_dir),
        "pyarrow.parquet": pq.read_table(table_dir),
        "pyarrow.dataset": ds.dataset(table_dir).to_table(),
        "polars": pl.read_parquet(table_dir),
        "duckdb": duckdb.sql(f"FROM '{table_dir}/*/*.parquet'"),
    }
    assert rows > 0 and {k: (len(v) if k != "duckdb" else v.shape[0]) for k, v in frames.items()} == dict.fromkeys(frames, rows)
    for name in ("pyarrow.parquet", "pyarrow.dataset"):
        assert frames[name].schema.names == schema.names
        for f in schema:
            assert frames[name].schema.field(f.name).type == f.type, (name, f.name)
    duck = dict(zip(frames["duckdb"].columns, map(str, frames["duckdb"].types)))
    for f in schema:
        plain = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if pa.types.is_dictionary(f.type):
            assert isinstance(frames["pandas"][f.name].dtype, pd.CategoricalDtype)
            assert frames["polars"].schema[f.name] in (pl.Categorical, pl.Enum)
        elif pa.types.is_integer(plain) and frames["pandas"][f.name].isna().any():
            assert frames["pandas"][f.name].dtype == "float64"  # pandas' NaN for a null int
            assert frames["polars"].schema[f.name] == _POLARS[plain], f.name
        else:
            assert str(frames["pandas"][f.name].dtype) in np.atleast_1d(_PANDAS[plain]), f.name
            assert frames["polars"].schema[f.name] == _POLARS[plain], f.name
        assert duck[f.name] == _DUCKDB[plain], f.name
    if "epoch" in schema.names:  # 1-based everywhere
        assert frames["pandas"]["epoch"].min() == 1


def test_export_writes_the_resolved_view(experiment: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    attempts = raw_frame(experiment, "attempts")
    for table, keys in (("steps", ["run_id", "trial_id", "step"]),
                        ("layers", ["run_id", "trial_id", "layer", "step"])):
        out = tmp_path / f"{table}.parquet"
        assert cli_main(["export", str(experiment), "-o", str(out)]) == 0
        assert f"wrote {out} ({table}," in capsys.readouterr().out
        got = pd.read_parquet(out).sort_values(keys).reset_index(drop=True)
        raw = raw_frame(experiment, table)
        want = pandas_supersede(raw, attempts).sort_values(keys).reset_index(drop=True)
        assert len(want) < len(raw)  # the restarts superseded rows
        pd.testing.assert_frame_equal(got, want[got.columns], check_dtype=False)
        assert pq.read_schema(out).metadata[b"dpda.telemetry.resolved"] == b"true"
    out = tmp_path / "e.parquet"
    assert cli_main(["export", str(experiment), "-o", str(out), "--table", "epochs"]) == 0
    got = pd.read_parquet(out)
    want = resolved_epochs(experiment)
    assert got[["trial_id", "epoch", "attempt"]].values.tolist() == want[["trial_id", "epoch", "attempt"]].values.tolist()
    with A.open_telemetry(experiment) as tel:  # the same as the store's view
        assert len(pd.read_parquet(tmp_path / "steps.parquet")) == tel.sql("SELECT count(*) AS n FROM steps")["n"].iloc[0]
    assert cli_main(["export", str(tmp_path / "nothing"), "-o", str(out)]) == 2


def test_one_conflict_definition_sql_python_and_tally() -> None:
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame({"skipped": rng.random(n) < 0.1, "conflict": rng.random(n) < 0.3})
    counted, conflicts = step_counts(frame["skipped"], frame["conflict"])
    sql = duckdb.sql(f"SELECT {STEP_COUNTS_SQL} FROM frame").fetchall()[0]
    assert sql == (counted, conflicts) == ((~frame["skipped"]).sum(), (frame["conflict"] & ~frame["skipped"]).sum())
    tally = EpochTally()
    for skipped, conflict in frame.itertuples(index=False):
        tally.add({"skipped": skipped, "conflict": conflict, "loss_orig": 1.0, "loss_aug": 1.0})
    assert tally.means()["conflict_fraction"] == conflict_fraction(conflicts, counted) == conflicts / counted
    assert np.isnan(conflict_fraction(0, 0)) and EpochTally().means()["conflict_fraction"] is None


def test_schema_1_layout_is_refused_naming_the_directory(tmp_path: Path) -> None:
    (tmp_path / "run" / "telemetry" / "steps" / "attempt=0").mkdir(parents=True)
    with pytest.raises(A.AnalysisError, match=r"attempt=0: telemetry of schema version 1"):
        A.open_telemetry(tmp_path / "run")
