"""The conflict matrix of many-path runs: per pair of paths, how often their gradients conflict.

A run with paths `orig, p1, ..., pK` (`attempts.paths`, schema 5) records per step the cosine of
every pair of path gradients (`steps.path_cos`, `schema.path_pairs` order) and, with layer
telemetry, per parameter tensor (`layers.path_cos`). Pair (i, j) conflicts on a step when its
cosine is negative; its conflict fraction is `dpda_analysis.conflict`'s, per pair: conflicting
over non-skipped steps (`STEP_COUNTS_SQL`), with the same Wilson interval over steps. Per layer
it is the per-layer definition of `dpda_analysis.queries`: the share of the tensor's finite
cosines that are negative (the writer stores skipped steps and non-finite cosines as null).
The mean cosine of a pair is over its finite cosines of non-skipped steps.

Runs written before schema 5 have no `paths`: a dual-path run is paths ("orig", "aug") and its
`cos` the only pair (a 2 x 2 matrix, the whole-model conflict fraction of `conflict_by`); a run
without an augmented path has no matrix. Rows come from the `Telemetry` views, so restarted
attempts' superseded steps are left out as everywhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from dpda_analysis import schema
from dpda_analysis.conflict import LEVEL, STEP_COUNTS_SQL, conflict_fraction, steps_interval
from dpda_analysis.errors import AnalysisError
from dpda_analysis.store import Telemetry

DUAL_PATHS: tuple[str, str] = (schema.ORIGINAL_PATH, "aug")
"""The paths of a dual-path run, as schema 5 writes them and as older runs read."""

PAIR_COLUMNS: tuple[str, ...] = (
    "run_id", "trial_id", "epoch_lo", "epoch_hi", "layer", "i", "j", "path_i", "path_j", "n_paths",
    "n", "conflicts", "fraction", "lo", "hi", "mean_cos")
"""`pair_conflicts`' columns (with `name` after `layer` when per layer)."""

POOLED_COLUMNS: tuple[str, ...] = ("rank", "path_i", "path_j", "trials", "n", "conflicts", "fraction", "lo", "hi",
                                   "mean_cos")
"""`most_conflicting_pairs(pooled=True)`'s columns."""

Per = Literal["epoch", "range", "trial"]

# The attempt's paths, derived for runs before schema 5 (a dual-path run: ("orig", "aug")).
_PATHS = (f"coalesce(paths, CASE WHEN augment_mode = 'dual' THEN "
          f"['{DUAL_PATHS[0]}', '{DUAL_PATHS[1]}'] ELSE []::VARCHAR[] END)")


def _pairs_sql(layers: bool, where: str) -> str:
    """Counts per (trial, epoch[, layer], attempt, pair index k): one row per unnested pair cosine
    `c`, the pair's list derived from `cos` where a two-path run did not record it. Grouped by the
    attempt, not its list of path names (grouping by a list costs ~3x; names join afterwards)."""
    table, alias = ("layers", "l") if layers else ("steps", "s")
    epoch = ("JOIN steps e ON l.run_id = e.run_id AND l.trial_id = e.trial_id AND l.step = e.step"
             if layers else "")
    base = f"""SELECT {alias}.run_id, {alias}.trial_id, {'e' if layers else 's'}.epoch,
                      {'l.layer, false AS skipped' if layers else 's.skipped'}, {alias}.attempt,
                      coalesce({alias}.path_cos, CASE WHEN a.n_paths = 2 THEN [{alias}.cos] END) AS pc
               FROM {table} {alias} {epoch}
               JOIN (SELECT run_id, trial_id, attempt, len({_PATHS}) AS n_paths FROM attempts) a
                 ON {alias}.run_id = a.run_id AND {alias}.trial_id = a.trial_id AND {alias}.attempt = a.attempt
               WHERE a.n_paths >= 2{where.format(alias=alias, epoch='e' if layers else 's')}"""
    rows = f"""SELECT *, coalesce(c < 0, false) AS conflict FROM (
                 SELECT * EXCLUDE (pc), unnest(pc) AS c, generate_subscripts(pc, 1) - 1 AS k FROM ({base}))"""
    # per layer, a row counts where its cosine is finite (null: skipped step or no direction)
    counts = ("count(c) FILTER (WHERE isfinite(c)) AS counted_steps, count(*) FILTER (WHERE c < 0) AS conflict_steps"
              if layers else STEP_COUNTS_SQL)
    keys = "run_id, trial_id, epoch, " + ("layer, " if layers else "") + "attempt, k"
    return f"""SELECT {keys}, {counts},
                      count(c) FILTER (WHERE NOT skipped AND isfinite(c)) AS n_cos,
                      sum(c) FILTER (WHERE NOT skipped AND isfinite(c)) AS sum_cos
               FROM ({rows}) GROUP BY {keys}"""


def _ranges(epochs: pd.Series, per: Per, ranges: int) -> pd.DataFrame:
    """(epoch_lo, epoch_hi) for each of one trial's epochs: itself, its part of `ranges`
    consecutive near-equal runs of the trial's epochs, or the trial's whole span."""
    have = np.sort(epochs.unique())
    if per == "epoch":
        spans = [[e] for e in have]
    elif per == "trial":
        spans = [have]
    else:
        spans = [s for s in np.array_split(have, ranges) if len(s)]
    rows = [(e, int(s[0]), int(s[-1])) for s in spans for e in s]
    return pd.DataFrame(rows, columns=["epoch", "epoch_lo", "epoch_hi"])


def pair_conflicts(
    tel: Telemetry,
    *,
    per: Per = "epoch",
    ranges: int = 3,
    layers: bool = False,
    epochs: tuple[int, int] | None = None,
    trials: Sequence[tuple[str, str]] | None = None,
    level: float = LEVEL,
) -> pd.DataFrame:
    """The conflict matrix as a tidy frame: one row per (trial, epoch span, layer, pair i < j).

    `per`: 'epoch' (a row per epoch, `epoch_lo` = `epoch_hi`), 'range' (each trial's epochs cut
    into `ranges` consecutive near-equal spans: thirds of the run by default) or 'trial' (the whole
    run). `layers`: per parameter tensor (`layer`, `name`) instead of the whole model (`layer` null).
    `epochs`: only epochs in [lo, hi]; `trials`: only these (run_id, trial_id).
    Columns `PAIR_COLUMNS`: the pair by index (`i`, `j`, 0 = the original) and name, the trial's
    `n_paths`, `n` counted steps (per layer: finite cosines), `conflicts`, `fraction` with its
    Wilson interval `lo`, `hi` at `level`, and `mean_cos`. Trials without a matrix (no augmented
    path, or no pair cosine recorded) have no rows.
    """
    if per not in ("epoch", "range", "trial"):
        raise AnalysisError(f"pair_conflicts: per must be 'epoch', 'range' or 'trial', got {per!r}")
    if ranges < 1:
        raise AnalysisError(f"pair_conflicts: ranges must be >= 1, got {ranges}")
    where, params = "", []
    if epochs is not None:
        where += " AND {epoch}.epoch BETWEEN ? AND ?"
        params += [int(epochs[0]), int(epochs[1])]
    if trials is not None:
        if not trials:
            where += " AND false"
        else:
            where += " AND (" + " OR ".join("({alias}.run_id = ? AND {alias}.trial_id = ?)" for _ in trials) + ")"
            params += [str(v) for pair in trials for v in pair]
    cols = list(PAIR_COLUMNS) if not layers else [*PAIR_COLUMNS[:5], "name", *PAIR_COLUMNS[5:]]
    return _pair_counts(tel, per, ranges, layers, where, params, level)[cols].reset_index(drop=True)


def _pair_counts(tel: Telemetry, per: Per, ranges: int, layers: bool, where: str, params: list,
                 level: float) -> pd.DataFrame:
    """`pair_conflicts` with the mean cosine's sums (`n_cos`, `sum_cos`) kept, for pooling."""
    raw = tel.sql(_pairs_sql(layers, where), params)
    if raw.empty:
        return pd.DataFrame(columns=[*PAIR_COLUMNS, "name", "n_cos", "sum_cos"])
    names = tel.sql(f"SELECT run_id, trial_id, attempt, {_PATHS} AS paths FROM attempts")
    raw = raw.merge(names.assign(paths=names["paths"].map(tuple)), on=["run_id", "trial_id", "attempt"], how="left")
    raw["n_paths"] = raw["paths"].map(len)
    pairs = {p: schema.path_pairs(p) for p in raw["n_paths"].unique()}
    raw["i"] = [pairs[p][k][0] for p, k in zip(raw["n_paths"], raw["k"])]
    raw["j"] = [pairs[p][k][1] for p, k in zip(raw["n_paths"], raw["k"])]
    raw["path_i"] = [path[i] for path, i in zip(raw["paths"], raw["i"])]
    raw["path_j"] = [path[j] for path, j in zip(raw["paths"], raw["j"])]
    spans = pd.concat([_ranges(g["epoch"], per, ranges).assign(run_id=r, trial_id=t)
                       for (r, t), g in raw.groupby(["run_id", "trial_id"], sort=False)])
    raw = raw.merge(spans, on=["run_id", "trial_id", "epoch"], how="left")
    if not layers:
        raw["layer"] = pd.NA
    keys = ["run_id", "trial_id", "epoch_lo", "epoch_hi", "layer", "i", "j", "path_i", "path_j"]
    out = raw.groupby(keys, sort=True, dropna=False).agg(
        n_paths=("n_paths", "max"), n=("counted_steps", "sum"), conflicts=("conflict_steps", "sum"),
        n_cos=("n_cos", "sum"), sum_cos=("sum_cos", "sum")).reset_index()
    out = _with_fraction(out, level)
    out["layer"] = out["layer"].astype("Int64")
    if layers:
        names = tel.sql("SELECT run_id, trial_id, layer, name FROM layer_names")
        names["layer"] = names["layer"].astype("Int64")
        out = out.merge(names, on=["run_id", "trial_id", "layer"], how="left")
    return out


def _with_fraction(counts: pd.DataFrame, level: float) -> pd.DataFrame:
    """`fraction`, its interval and `mean_cos` from summed counts (`n`, `conflicts`, `n_cos`, `sum_cos`)."""
    k, n = counts["conflicts"].to_numpy(float), counts["n"].to_numpy(float)
    counts[["n", "conflicts"]] = counts[["n", "conflicts"]].astype(np.int64)
    counts["fraction"] = conflict_fraction(k, n)
    counts["lo"], counts["hi"] = steps_interval(k, n, level)
    counts["mean_cos"] = counts["sum_cos"] / counts["n_cos"].where(counts["n_cos"] > 0)
    return counts


def pair_matrix(pairs: pd.DataFrame, value: str = "fraction") -> pd.DataFrame:
    """One group's rows of `pair_conflicts` (one trial, epoch span and layer) as the symmetric
    P x P matrix of `value` ('fraction', 'lo', 'hi', 'mean_cos', 'n', 'conflicts'), rows and
    columns the path names in path order, the diagonal NaN."""
    if pairs.empty:
        return pd.DataFrame(dtype=float)
    group = pairs[["run_id", "trial_id", "epoch_lo", "epoch_hi", "layer"]].astype(str).drop_duplicates()
    if len(group) > 1:
        raise AnalysisError(f"pair_matrix: rows of {len(group)} groups (trial, epoch span, layer); select one")
    size = int(pairs["n_paths"].max())
    names = [""] * size
    for i, j, a, b in zip(pairs["i"], pairs["j"], pairs["path_i"], pairs["path_j"]):
        names[i], names[j] = a, b
    matrix = np.full((size, size), np.nan)
    for i, j, v in zip(pairs["i"], pairs["j"], pairs[value].astype(float)):
        matrix[i, j] = matrix[j, i] = v
    return pd.DataFrame(matrix, index=pd.Index(names, name="path"), columns=pd.Index(names, name="path"))


def conflict_matrix(tel: Telemetry, run_id: str, trial_id: str, *, epochs: tuple[int, int] | None = None,
                    layer: int | None = None, value: str = "fraction") -> pd.DataFrame:
    """The P x P conflict-fraction matrix (or another `pair_conflicts` column as `value`) of one
    trial over `epochs` [lo, hi] (None: the whole run), whole model or one `layer`."""
    pairs = pair_conflicts(tel, per="trial", layers=layer is not None, epochs=epochs, trials=[(run_id, trial_id)])
    if layer is not None:
        pairs = pairs[pairs["layer"] == layer]
    return pair_matrix(pairs, value)


def cosine_matrix(tel: Telemetry, run_id: str, trial_id: str, *, epochs: tuple[int, int] | None = None,
                  layer: int | None = None) -> pd.DataFrame:
    """The P x P matrix of the pairs' mean cosines (as `conflict_matrix`)."""
    return conflict_matrix(tel, run_id, trial_id, epochs=epochs, layer=layer, value="mean_cos")


def most_conflicting_pairs(tel: Telemetry, *, pooled: bool = False, epochs: tuple[int, int] | None = None,
                           level: float = LEVEL) -> pd.DataFrame:
    """The pairs ranked by conflict fraction, highest first (`rank` 1), with their intervals:
    per trial over its whole run (or `epochs`), or `pooled` over every trial by the pair's names
    (its steps summed; `trials` counts them). Whole model."""
    if pooled:
        where, params = ("", []) if epochs is None else (" AND {epoch}.epoch BETWEEN ? AND ?", [*map(int, epochs)])
        counts = _pair_counts(tel, "trial", 1, False, where, params, level)
        if counts.empty:
            return pd.DataFrame(columns=POOLED_COLUMNS)
        pooled_counts = counts.groupby(["path_i", "path_j"], sort=False).agg(
            trials=("trial_id", "size"), n=("n", "sum"), conflicts=("conflicts", "sum"),
            n_cos=("n_cos", "sum"), sum_cos=("sum_cos", "sum")).reset_index()
        pooled_counts = _with_fraction(pooled_counts, level).sort_values(
            ["fraction", "path_i", "path_j"], ascending=[False, True, True])
        return pooled_counts.assign(rank=np.arange(1, len(pooled_counts) + 1))[list(POOLED_COLUMNS)].reset_index(drop=True)
    pairs = pair_conflicts(tel, per="trial", epochs=epochs, level=level)
    if pairs.empty:
        return pairs.assign(rank=pd.Series(dtype=np.int64))
    pairs = pairs.sort_values(["run_id", "trial_id", "fraction", "i", "j"], ascending=[True, True, False, True, True])
    pairs["rank"] = pairs.groupby(["run_id", "trial_id"]).cumcount() + 1
    return pairs.reset_index(drop=True)


def max_paths(tel: Telemetry) -> int:
    """The most paths any trial has (0 without telemetry or without an augmented path): what
    decides whether the report draws the matrix."""
    got = tel.sql(f"SELECT coalesce(max(len({_PATHS})), 0) AS n FROM attempts")["n"].iloc[0]
    return int(got)
