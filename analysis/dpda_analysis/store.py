"""DuckDB views over the telemetry Parquet of one or many runs, with supersession applied.

Views (all deduplicated so each step of each trial appears once, from the lineage that
finished): `steps`, `layers`, `epochs`, `attempts`, `layer_names`; the unfiltered files are
`raw_<table>`. Supersession (see `dpda_analysis.schema`) becomes a plain filter on
step of a restarted attempt's files (`step < cut`), which DuckDB pushes into the Parquet scan
as row-group pruning; runs without restarts get no filter at all.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dpda_analysis import schema as S
from dpda_analysis.discover import RunDir, find_runs
from dpda_analysis.errors import AnalysisError

def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _scan(patterns: list[str]) -> str:
    return f"read_parquet([{', '.join(map(_sql_str, patterns))}], hive_partitioning = false)"


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """Dictionary columns as plain strings (what DuckDB exposes them as)."""
    return pa.schema(
        [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema]
    )


class Telemetry:
    """Telemetry of every run below `path`, queryable with SQL; returns pandas DataFrames.

    `metric` is the dev metric Tune reported in `result.json` (used when a trial's epochs table
    has no dev EER); `threads`/`memory_limit` cap DuckDB (defaults: all cores, DuckDB's default).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        metric: str = "dev_eer",
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.metric = metric
        self.runs: list[RunDir] = find_runs(path)
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
        for table, schema in S.TABLES.items():
            self._raw_view(table, schema)
        self._define_views()
        self.trials: pd.DataFrame = self._trials()
        self.tune_results: pd.DataFrame = self._tune_results()

    # ------------------------------------------------------------------ public
    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a query over the views and return a DataFrame."""
        return self.con.execute(query, params or []).df()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ views
    def _raw_view(self, table: str, schema: pa.Schema) -> None:
        globs = []
        for run in self.runs:
            if run.parts(table):
                self._check_version(run, table)
                globs.append(run.glob(table))
        if globs:
            source = _scan(globs)
        else:  # no run has this table yet: an empty relation with the right columns
            name = f"empty_{table}"
            self.con.register(name, _plain_schema(schema).empty_table())
            source = name
        self.con.execute(f"CREATE VIEW raw_{table} AS SELECT * FROM {source}")

    @staticmethod
    def _check_version(run: RunDir, table: str) -> None:
        first = sorted(glob.glob(run.glob(table)))[0]
        try:
            meta = pq.read_schema(first).metadata or {}
        except (OSError, pa.ArrowInvalid) as exc:
            raise AnalysisError(f"{first}: not a readable Parquet file ({exc})") from None
        version = meta.get(S.META_VERSION_KEY)
        if version is None:
            raise AnalysisError(f"{first}: no {S.META_VERSION_KEY.decode()} metadata; not dpda telemetry")
        if int(version) > S.SCHEMA_VERSION:
            raise AnalysisError(
                f"{first}: telemetry schema version {int(version)} is newer than this reader "
                f"({S.SCHEMA_VERSION}); upgrade dpda_analysis"
            )

    def _define_views(self) -> None:
        con = self.con
        con.execute(
            """CREATE VIEW attempts AS SELECT * FROM raw_attempts
               QUALIFY row_number() OVER (PARTITION BY run_id, trial_id, attempt
                                          ORDER BY started_at DESC) = 1"""
        )
        cuts = con.execute(
            """SELECT a.run_id, a.trial_id, a.attempt, min(b.resumed_from_step) AS cut
               FROM attempts a JOIN attempts b
                 ON a.run_id = b.run_id AND a.trial_id = b.trial_id AND b.attempt > a.attempt
               WHERE b.resumed_from_step IS NOT NULL
               GROUP BY ALL ORDER BY ALL"""
        ).fetchall()
        self.cuts = cuts
        self._cut = {(r, t, int(a)): int(c) for r, t, a, c in cuts}
        self._ids = self._ids_by_run()
        for table in ("steps", "layers", "epochs"):
            branches = [b for run in self.runs if run.parts(table) for b in self._branches(run, table)]
            source = " UNION ALL ".join(branches) if branches else f"SELECT * FROM raw_{table}"
            dedupe = (
                # An epoch re-logged by a later attempt: the highest attempt wins.
                " QUALIFY row_number() OVER (PARTITION BY run_id, trial_id, epoch"
                " ORDER BY attempt DESC, step DESC) = 1"
                if table == "epochs" else ""
            )
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM ({source}){dedupe}")
        con.execute(
            """CREATE VIEW layer_names AS SELECT * FROM raw_layer_names
               QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, trial_id)"""
        )

    def _branches(self, run: RunDir, table: str) -> list[str]:
        """SELECTs whose UNION ALL is `table` of one run dir with superseded rows removed.

        Normally one writer identity per run dir: its ids become SQL constants (grouping by a
        constant costs nothing, by a string column ~40% of a 100 M row scan) and each restarted
        attempt's directory gets a `step < cut` filter that prunes whole row groups.
        """
        names = [f.name for f in S.TABLES[table]]
        pairs = self._ids.get(str(run.path), [])
        if len(pairs) != 1:  # several writers share the dir: read the ids, filter per row
            keep = [
                f"(run_id = {_sql_str(r)} AND trial_id = {_sql_str(t)} AND attempt = {a} AND step >= {c})"
                for (r, t, a), c in self._cut.items()
                if (r, t) in pairs
            ]
            where = f" WHERE NOT ({' OR '.join(keep)})" if keep else ""
            return [f"SELECT {', '.join(names)} FROM {_scan([run.glob(table)])}{where}"]
        run_id, trial_id = pairs[0]
        consts = {"run_id": _sql_str(run_id), "trial_id": _sql_str(trial_id)}
        select = ", ".join(f"{consts[n]} AS {n}" if n in consts else n for n in names)
        plain, out = [], []
        for directory in sorted((run.telemetry / table).glob("attempt=*")):
            pattern = str(directory / S.PART_GLOB)
            if not glob.glob(pattern):
                continue
            cut = self._cut.get((run_id, trial_id, int(directory.name.split("=", 1)[1])))
            if cut is None:
                plain.append(pattern)
            else:
                out.append(f"SELECT {select} FROM {_scan([pattern])} WHERE step < {cut}")
        if plain:
            out.append(f"SELECT {select} FROM {_scan(plain)}")
        return out

    # ------------------------------------------------------------------ trials
    def _ids_by_run(self) -> dict[str, list[tuple[str, str]]]:
        rows = self.con.execute(
            "SELECT DISTINCT filename, run_id, trial_id FROM read_parquet("
            f"[{', '.join(_sql_str(r.glob('attempts')) for r in self.runs if r.parts('attempts'))}], "
            "filename = true, hive_partitioning = false)"
        ).fetchall() if any(r.parts("attempts") for r in self.runs) else []
        by_run: dict[str, set[tuple[str, str]]] = {}
        for filename, run_id, trial_id in rows:
            run_dir = str(Path(filename).parents[3])  # RUN/telemetry/attempts/attempt=K/part
            by_run.setdefault(run_dir, set()).add((run_id, trial_id))
        return {k: sorted(v) for k, v in by_run.items()}

    def _trials(self) -> pd.DataFrame:
        """One row per (run_id, trial_id): where it lives, its static settings and Tune params."""
        ids = self._ids
        static = self.sql(
            """SELECT run_id, trial_id, count(*) AS attempts, arg_max(rule, attempt) AS rule,
                      arg_max(strength, attempt) AS strength,
                      arg_max(rawboost_algo, attempt) AS rawboost_algo,
                      arg_max(world_size, attempt) AS world_size,
                      arg_max(n_layers, attempt) AS n_layers,
                      arg_max(config_json, attempt) AS config_json
               FROM attempts GROUP BY ALL"""
        )
        rows = []
        for run in self.runs:
            pairs = ids.get(str(run.path)) or [self._tune_ids(run)]
            for run_id, trial_id in pairs:
                rows.append(
                    {
                        "run_id": run_id,
                        "trial_id": trial_id,
                        "run_dir": str(run.path),
                        "has_telemetry": str(run.path) in ids,
                        **{f"param.{k}": v for k, v in run.params.items()},
                    }
                )
        trials = pd.DataFrame(rows)
        trials = trials.merge(static, on=["run_id", "trial_id"], how="left")
        return trials.drop_duplicates(["run_id", "trial_id"]).reset_index(drop=True)

    def _tune_ids(self, run: RunDir) -> tuple[str, str]:
        """Identity of a Tune trial that wrote no telemetry (from result.json, else its dir)."""
        last = run.results[-1] if run.results else {}
        return run.path.parent.name, str(last.get("trial_id", run.path.name))

    def _tune_results(self) -> pd.DataFrame:
        """Per-report `metric` values from Tune's result.json, keyed like the trials table."""
        by_dir = self.trials.groupby("run_dir")[["run_id", "trial_id"]].first()
        rows = []
        for run in self.runs:
            if str(run.path) not in by_dir.index:
                continue
            run_id, trial_id = by_dir.loc[str(run.path)]
            for i, rec in enumerate(run.results):
                if self.metric in rec and not isinstance(rec[self.metric], (str, bool)):
                    epoch = rec.get("epoch", rec.get("training_iteration", i + 1) - 1)
                    rows.append((run_id, trial_id, int(epoch), float(rec[self.metric])))
        return pd.DataFrame(rows, columns=["run_id", "trial_id", "epoch", self.metric])


def open_telemetry(path: str | os.PathLike, **kwargs: Any) -> Telemetry:
    """Open a run dir, a directory of runs or a Ray Tune experiment dir."""
    return Telemetry(path, **kwargs)
