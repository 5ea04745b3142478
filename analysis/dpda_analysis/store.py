"""DuckDB views over the telemetry Parquet of one or many runs, with supersession applied.

Views (all deduplicated so each step of each trial appears once, from the lineage that
finished): `steps`, `layers`, `epochs`, `attempts`, `layer_names`; the unfiltered files are
`raw_<table>`. Supersession (see `dpda_analysis.schema`) is decided per part file from
the footers' step statistics: a restarted attempt's parts wholly before the resume point are
read unfiltered, wholly after it are left out, and only the part around it gets a `step < cut`
filter; runs without restarts get no filter at all. `Telemetry.partial_aggregate` aggregates
each of those scans separately, so big per-layer queries never group by the id strings.
Every part's footer is checked first (`dpda_analysis.parts`): a part cut short is left out with
a warning naming it (`Telemetry.skipped`), a foreign one is an AnalysisError naming the column.
Parts missing by their numbers (`dpda_analysis.gaps`: deleted, never copied) are a warning per
run naming them (`Telemetry.missing`).
`path` is a local path or any pyarrow filesystem URI (s3://, gs://, hdfs://): it is resolved
once (`Telemetry.location`) and every listing and scan goes through that filesystem.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from dpda_analysis import schema
from dpda_analysis.discover import RunDir, find_runs
from dpda_analysis.errors import AnalysisError, MissingPartsWarning
from dpda_analysis.gaps import describe, missing_parts
from dpda_analysis.location import resolve
from dpda_analysis.parts import check_parts, expected_types, plain_schema
from dpda_analysis.variant import resolved_columns_sql, variant_sql

DEFAULT_MEMORY_LIMIT = "256MB"


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _scan(patterns: list[str], by_name: bool = False) -> str:
    """`by_name`: files of different schema versions, matched by column name (union_by_name)."""
    union = ", union_by_name = true" if by_name else ""
    return f"read_parquet([{', '.join(map(_sql_str, patterns))}], hive_partitioning = false{union})"


@dataclass(frozen=True)
class _Branch:
    """One Parquet scan of a table: its filter (supersession) and its constant ids, if any."""

    scan: str
    where: str  # SQL condition, "" for none
    consts: dict[str, str] | None  # column -> SQL literal, when one writer owns the files
    absent: dict[str, str] | None = None  # column -> DuckDB type: no file has it (older schema), null

    def select(self, names: Sequence[str]) -> str:
        consts = {**{n: f"NULL::{kind}" for n, kind in (self.absent or {}).items()}, **(self.consts or {})}
        cols = ", ".join(f"{consts[n]} AS {n}" if n in consts else n for n in names)
        return f"SELECT {cols} FROM {self.scan}" + (f" WHERE {self.where}" if self.where else "")


class Telemetry:
    """Telemetry of every run below `path`, queryable with SQL; returns pandas DataFrames.

    `metric` is the dev metric Tune reported in `result.json` (used when a trial's epochs table
    has no dev EER); `threads` caps DuckDB's threads (default: all cores). `memory_limit` caps
    DuckDB's buffer memory (None: DuckDB's default, 80% of RAM). The 256 MB default is why a
    100 M row per-layer query peaks ~30 MB lower: with a far-off limit DuckDB keeps freed scan
    buffers; the aggregations here need little, and larger sorts/joins spill to disk.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        metric: str = "dev_eer",
        threads: int | None = None,
        memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        self.location = resolve(path)
        self.path = self.location.path(self.location.root)
        self.metric = metric
        self.runs: list[RunDir] = find_runs(self.location)
        self.con = duckdb.connect(":memory:")
        self.location.attach(self.con)
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute("SET enable_progress_bar = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit:
            self.con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
        self._globbed: dict[str, list[str]] = {}  # one listing per pattern (a paged LIST on object storage)
        files = {t: [f for run in self.runs if run.parts(t) for f in self._glob(run.glob(t))] for t in schema.TABLES}
        # parts left out (not readable Parquet), and each other part's schema version
        self.skipped, self._versions = check_parts(self.con, files)
        listed = [self.location.fs_path(f) for table_files in files.values() for f in table_files]
        self.missing: list[str] = describe(missing_parts(listed, self._list_parts))  # one line per run
        for line in self.missing:
            warnings.warn(MissingPartsWarning(line), stacklevel=2)
        self._skip = set(self.skipped)
        for table, table_schema in schema.TABLES.items():
            self._raw_view(table, table_schema)
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
    def _list_parts(self) -> list[str]:
        """Every part file of every run, as paths on the location's filesystem."""
        return [self.location.fs_path(f) for run in self.runs if run.telemetry is not None
                for table in schema.TABLES for f in self.location.glob(run.glob(table))]

    def _parts(self, pattern: str) -> list[str]:
        """What to scan for the parts `pattern` matches: [pattern] itself, or when some were
        skipped the others by name; [] when none is left."""
        files = self._glob(pattern)
        good = [f for f in files if f not in self._skip]
        return [pattern] if good and len(good) == len(files) else good

    def _glob(self, pattern: str) -> list[str]:
        if pattern not in self._globbed:
            self._globbed[pattern] = self.location.glob(pattern)
        return self._globbed[pattern]

    def _source(self, patterns: list[str], table: str) -> tuple[str, dict[str, str]]:
        """The scan of `patterns` (parts of `table`) and the columns none of its files has, with
        their types: parts of an older schema lack the columns added since (`schema.ADDED_IN`).
        Parts of different versions together are read by column name."""
        added = {n: v for n, v in schema.ADDED_IN.items() if n in schema.TABLES[table].names}
        if not added:
            return _scan(patterns), {}
        versions = {self._versions.get(f, schema.SCHEMA_VERSION) for p in patterns for f in self._glob(p)}
        if not versions:
            return _scan(patterns), {}
        types = expected_types(self.con, table)
        absent = {n: types[n] for n, v in added.items() if max(versions) < v}
        mixed = any(min(versions) < v <= max(versions) for v in added.values())
        return _scan(patterns, by_name=mixed), absent

    def _has(self, run: RunDir, table: str) -> bool:
        return run.parts(table) and bool(self._parts(run.glob(table)))

    def _raw_view(self, table: str, table_schema: pa.Schema) -> None:
        globs = [p for run in self.runs if self._has(run, table) for p in self._parts(run.glob(table))]
        if globs:
            scan, absent = self._source(globs, table)
            source = f"(SELECT *{''.join(f', NULL::{kind} AS {n}' for n, kind in absent.items())} FROM {scan})"
        else:  # no run has this table yet: an empty relation with the right columns
            name = f"empty_{table}"
            self.con.register(name, plain_schema(table_schema).empty_table())
            source = name
        self.con.execute(f"CREATE VIEW raw_{table} AS SELECT * FROM {source}")

    def _define_views(self) -> None:
        con = self.con
        con.execute(
            f"""CREATE VIEW attempts AS SELECT *, {variant_sql()} AS variant FROM (
                  SELECT * REPLACE ({resolved_columns_sql()}) FROM raw_attempts
                  QUALIFY row_number() OVER (PARTITION BY run_id, trial_id, attempt
                                             ORDER BY started_at DESC) = 1)"""
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
        self._branch_list: dict[str, list[_Branch]] = {}
        for table in ("steps", "layers", "epochs"):
            branches = [b for run in self.runs if self._has(run, table) for b in self._branches(run, table)]
            self._branch_list[table] = branches
            names = [f.name for f in schema.TABLES[table]]
            source = (
                " UNION ALL ".join(f"({b.select(names)})" for b in branches)
                if branches else f"SELECT * FROM raw_{table}"
            )
            dedupe = (
                # An epoch re-logged by a later attempt: the highest attempt wins.
                " QUALIFY row_number() OVER (PARTITION BY run_id, trial_id, epoch"
                " ORDER BY attempt DESC, step DESC) = 1"
                if table == "epochs" else ""
            )
            if table == "steps":  # rule and augment_mode as schema 3 has them, and the variant label
                source = (f"SELECT *, {variant_sql()} AS variant FROM "
                          f"(SELECT * REPLACE ({resolved_columns_sql()}) FROM ({source}))")
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM ({source}){dedupe}")
        con.execute(
            """CREATE VIEW layer_names AS SELECT * FROM raw_layer_names
               QUALIFY attempt = max(attempt) OVER (PARTITION BY run_id, trial_id)"""
        )

    def _branches(self, run: RunDir, table: str) -> list[_Branch]:
        """Scans whose UNION ALL is `table` of one run dir with superseded rows removed.

        Normally one writer identity per run dir: its ids become SQL constants (no string
        column to decode or group by) and each restarted attempt's directory gets a
        `step < cut` filter that prunes whole row groups.
        """
        pairs = self._ids.get(str(run.path), [])
        if len(pairs) != 1:  # several writers share the dir: read the ids, filter per row
            keep = [
                f"(run_id = {_sql_str(r)} AND trial_id = {_sql_str(t)} AND attempt = {a} AND step >= {c})"
                for (r, t, a), c in self._cut.items()
                if (r, t) in pairs
            ]
            where = f"NOT ({' OR '.join(keep)})" if keep else ""
            return [self._branch(self._parts(run.glob(table)), table, where, None)]
        run_id, trial_id = pairs[0]
        consts = {"run_id": _sql_str(run_id), "trial_id": _sql_str(trial_id)}
        plain, out = [], []
        for directory in self.location.glob(self.location.duck(run.telemetry / table / schema.ATTEMPT_GLOB)):
            directory = self.location.path(self.location.fs_path(directory))
            attempt = schema.attempt_of_dir(directory.name)
            parts = self._parts(self.location.duck(directory / schema.PART_GLOB)) if attempt is not None else []
            if not parts:
                continue
            cut = self._cut.get((run_id, trial_id, attempt))
            if cut is None:
                plain += parts
                continue
            below, straddle = self._split_at(parts, cut)
            plain += below
            if straddle:
                out.append(self._branch(straddle, table, f"step < {cut}", consts))
        if plain:
            out.append(self._branch(plain, table, "", consts))
        return out

    def _branch(self, patterns: list[str], table: str, where: str, consts: dict[str, str] | None) -> _Branch:
        """The branch scanning the parts `patterns` of `table`."""
        scan, absent = self._source(patterns, table)
        return _Branch(scan, where, consts, absent)

    def _split_at(self, parts: list[str], cut: int) -> tuple[list[str], list[str]]:
        """Parts of a restarted attempt: (all steps < cut, some steps < cut); the rest are dropped.

        From the footers' step statistics, so only the parts around the resume point pay a
        per-row filter, and wholly superseded parts are never opened by later queries.
        """
        rows = self.con.execute(
            """SELECT file_name, min(stats_min_value::BIGINT), max(stats_max_value::BIGINT)
               FROM parquet_metadata(?) WHERE path_in_schema = 'step'
               GROUP BY file_name ORDER BY file_name""", [parts]
        ).fetchall()
        files = sorted(f for p in parts for f in self.location.glob(p))
        if len(rows) != len(files) or any(lo is None or hi is None for _, lo, hi in rows):
            return [], files  # no usable statistics: filter every row
        below = [f for f, lo, hi in rows if hi < cut]
        straddle = [f for f, lo, hi in rows if lo < cut <= hi]
        return below, straddle

    def partial_aggregate(self, table: str, keys: Sequence[str], aggregates: Sequence[str]) -> str:
        """SQL giving `run_id, trial_id, *keys, *aggregates` per scan branch of `table`.

        The caller re-aggregates it (so use only decomposable aggregates: count, sum, min,
        max). Why: grouping the deduplicated view by the trial ids hashes two strings per row
        (~40% of a 100 M row scan); here each branch groups by `keys` alone and gets its ids as
        constants afterwards, and supersession stays a row-group-pruning filter.
        """
        names = {f.name for f in schema.TABLES[table]}
        bad = [k for k in keys if k not in names or k in ("run_id", "trial_id")]
        if bad:
            raise AnalysisError(f"partial_aggregate: {bad[0]!r} is not a grouping column of {table}")
        aggs = ", ".join(aggregates)
        out = []
        for branch in self._branch_list[table]:
            where = f" WHERE {branch.where}" if branch.where else ""
            if branch.consts is None:
                cols = ", ".join(["run_id", "trial_id", *keys])
                out.append(f"SELECT {cols}, {aggs} FROM {branch.scan}{where} GROUP BY {cols}")
            else:
                inner_keys = ", ".join(keys)
                group = f" GROUP BY {inner_keys}" if keys else ""
                inner = f"SELECT {inner_keys + ', ' if keys else ''}{aggs} FROM {branch.scan}{where}{group}"
                ids = ", ".join(f"{v} AS {k}" for k, v in branch.consts.items())
                out.append(f"SELECT {ids}, * FROM ({inner})")
        if not out:  # no run has this table: one empty partial with the right columns
            cols = ", ".join(["run_id", "trial_id", *keys])
            return f"SELECT {cols}, {aggs} FROM raw_{table} GROUP BY {cols}"
        return " UNION ALL ".join(f"({q})" for q in out)

    # ------------------------------------------------------------------ trials
    def _ids_by_run(self) -> dict[str, list[tuple[str, str]]]:
        sources = [p for r in self.runs if self._has(r, "attempts") for p in self._parts(r.glob("attempts"))]
        rows = self.con.execute(
            "SELECT DISTINCT filename, run_id, trial_id FROM read_parquet("
            "?, filename = true, hive_partitioning = false, union_by_name = true)", [sources]
        ).fetchall() if sources else []
        by_run: dict[str, set[tuple[str, str]]] = {}
        for filename, run_id, trial_id in rows:
            run_dir = self.location.fs_path(filename).rsplit("/", 4)[0]  # RUN/telemetry/<table>/attempt-K/part
            by_run.setdefault(run_dir, set()).add((run_id, trial_id))
        return {k: sorted(v) for k, v in by_run.items()}

    def _trials(self) -> pd.DataFrame:
        """One row per (run_id, trial_id): where it lives, its static settings and Tune params."""
        ids = self._ids
        static = self.sql(
            """SELECT run_id, trial_id, count(*) AS attempts, arg_max(rule, attempt) AS rule,
                      arg_max(augment_mode, attempt) AS augment_mode, arg_max(variant, attempt) AS variant,
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
                    epoch = rec.get("epoch", rec.get("training_iteration", i + 1))  # 1-based
                    rows.append((run_id, trial_id, int(epoch), float(rec[self.metric])))
        return pd.DataFrame(rows, columns=["run_id", "trial_id", "epoch", self.metric])


def open_telemetry(path: str | os.PathLike, **kwargs: Any) -> Telemetry:
    """Open a run dir, a directory of runs or a Ray Tune experiment dir."""
    return Telemetry(path, **kwargs)
