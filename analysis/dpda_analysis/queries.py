"""Conflict analysis over a `Telemetry`: every function returns a pandas DataFrame.

Definitions (kept identical everywhere, and in the tests' direct pandas computations):
- whole-model conflict fraction: `dpda_analysis.conflict` (conflicting over non-skipped steps;
  the training loop, Tune and the writer use the same function), with a Wilson interval over
  steps (`conflict_low`, `conflict_high`);
- per transform / per combination of transforms: `dpda_analysis.conflict` too (the steps where
  some utterance received it), over dual-path steps with an applied-transforms record (schema 4);
- per-layer conflict fraction = share of `layers` rows with `cos < 0` among rows whose cosine
  is finite (the writer stores a non-finite cosine as null: no direction, so neither);
- best dev EER of a trial = min over its epochs' `dev_eer` (epochs table, else Tune's
  `result.json`); `best_epoch` = earliest (1-based) epoch reaching it; `epochs_to_best` = epochs
  run up to and including it;
- model dev EER = the dev EER of the model the trial saved (`model.pt`, the average of its best
  epochs; `summary.json`), with its bootstrap interval: what a user of that model gets;
- status: `completed` (the Trainer finished: summary.json) or `stopped early` (ASHA, or killed);
- variant: what trials are grouped and shown by, the alignment rule of a dual-path run, else its
  augment mode (`dpda_analysis.variant`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scipy import stats

from dpda_analysis.conflict import RECEIVED_COUNTS_SQL, STEP_COUNTS_SQL, across_runs_interval
from dpda_analysis.conflict import conflict_fraction as fraction
from dpda_analysis.conflict import steps_interval
from dpda_analysis.errors import AnalysisError
from dpda_analysis.evaluation import COMPLETED, read_outcomes
from dpda_analysis.store import Telemetry

_STEP_CONFLICT = f"""{STEP_COUNTS_SQL},
    avg(cos) FILTER (WHERE NOT skipped AND isfinite(cos)) AS mean_cos,
    count(*) FILTER (WHERE skipped) AS skipped_steps"""

# layers.cos is null where not finite (writer contract), so plain aggregates skip those rows.
_LAYER_CONFLICT = """count(cos) AS rows, avg((cos < 0)::DOUBLE) AS conflict_fraction, avg(cos) AS mean_cos"""

_GROUPS = {
    "trial": ["run_id", "trial_id"],
    "rule": ["rule"],
    "variant": ["variant"],
    "rawboost_algo": ["rawboost_algo"],
    "epoch": ["run_id", "trial_id", "epoch"],
}


def _with_fraction(counts: pd.DataFrame) -> pd.DataFrame:
    """`steps` (counted), `conflict_fraction` and its interval over steps from the SQL counts."""
    k, n = counts.pop("conflict_steps").to_numpy(float), counts.pop("counted_steps").to_numpy(float)
    at = list(counts.columns).index("mean_cos")
    counts.insert(at, "steps", n.astype(np.int64))
    counts.insert(at + 1, "conflict_steps", k.astype(np.int64))
    counts.insert(at + 2, "conflict_fraction", fraction(k, n))
    low, high = steps_interval(k, n)
    counts.insert(at + 3, "conflict_low", low)
    counts.insert(at + 4, "conflict_high", high)
    return counts


def conflict_fraction(tel: Telemetry) -> pd.DataFrame:
    """Whole-model conflict fraction over every step of every trial (one row)."""
    return _with_fraction(
        tel.sql(f"SELECT count(DISTINCT (run_id, trial_id)) AS trials, {_STEP_CONFLICT} FROM steps"))


def conflict_by(tel: Telemetry, by: str | list[str]) -> pd.DataFrame:
    """Whole-model conflict fraction grouped by 'trial', 'rule', 'variant', 'rawboost_algo', 'epoch'
    or columns.

    Trial-level groups also carry the trial's rule, augment mode, variant, strength and RawBoost
    algorithm.
    """
    cols = _GROUPS.get(by, [by]) if isinstance(by, str) else list(by)
    _check_columns(tel, "steps", cols)
    keys = ", ".join(cols)
    extra = ""
    if "trial_id" in cols and not {"rule", "variant"} & set(cols):
        extra = (", any_value(rule) AS rule, any_value(augment_mode) AS augment_mode, any_value(variant) AS variant,"
                 " any_value(strength) AS strength, any_value(rawboost_algo) AS rawboost_algo")
    trials = "" if "trial_id" in cols else ", count(DISTINCT (run_id, trial_id)) AS trials"
    return _with_fraction(tel.sql(
        f"SELECT {keys}{extra}{trials}, {_STEP_CONFLICT} FROM steps GROUP BY {keys} ORDER BY {keys}"
    ))


def _received(tel: Telemetry, by: str | list[str], unnest: str, label: str, order: str,
              derive: str = "") -> pd.DataFrame:
    """Per group and transform (or combination): `RECEIVED_COUNTS_SQL` over the rows `unnest`
    makes of each dual-path step with an applied-transforms record (`received` and what the
    `label` columns need, or `derive` from them; the attempt's leaves are `leaves`), with the
    fractions and the interval."""
    cols = _GROUPS.get(by, [by]) if isinstance(by, str) else list(by)
    _check_columns(tel, "steps", cols)
    keys = ", ".join(cols)
    rows = f"""SELECT *, {unnest} FROM (
                 SELECT s.*, a.augment_leaves AS leaves FROM steps s JOIN attempts a
                   ON s.run_id = a.run_id AND s.trial_id = a.trial_id AND s.attempt = a.attempt
                 WHERE s.augment_mode = 'dual' AND len(s.augment_counts) > 0)"""
    if derive:
        rows = f"SELECT *, {derive} FROM ({rows})"
    counts = tel.sql(
        f"""SELECT {keys}, {label}, count(DISTINCT (run_id, trial_id)) AS trials, {RECEIVED_COUNTS_SQL}
            FROM ({rows}) GROUP BY ALL ORDER BY {keys}, {order}"""
    )
    k, n = counts.pop("conflict_steps").to_numpy(float), counts.pop("counted_steps").to_numpy(float)
    got, hit = counts.pop("received_utterances").to_numpy(float), counts.pop("conflict_utterances").to_numpy(float)
    low, high = steps_interval(k, n)
    return counts.assign(steps=n.astype(np.int64), conflict_steps=k.astype(np.int64), conflict_fraction=fraction(k, n),
                         conflict_low=low, conflict_high=high, received_utterances=got.astype(np.int64),
                         weighted_conflict_fraction=fraction(hit, got))


def conflict_by_transform(tel: Telemetry, by: str | list[str] = "variant") -> pd.DataFrame:
    """Conflict fraction per transform of the augmentation pipeline (`dpda_analysis.conflict`:
    over the steps where some utterance received it), per group as in `conflict_by`.

    One row per (group, `leaf`): the leaf's key below `augment.` (`attempts.augment_leaves`,
    unique within a pipeline), its `transform` name and mask `bit`, then `trials`, `steps`,
    `conflict_steps`, `conflict_fraction` with its Wilson interval over steps, and the
    utterance-weighted `weighted_conflict_fraction` over `received_utterances`. Only dual-path
    steps written by schema 4 or later carry the record: empty without any."""
    return _received(
        tel, by, "unnest(augment_counts) AS received, generate_subscripts(augment_counts, 1) - 1 AS bit",
        "coalesce(leaves[bit + 1], 'bit ' || bit) AS leaf, regexp_extract(leaf, '[^.]+$') AS transform, bit",
        "bit, leaf")


def conflict_by_combination(tel: Telemetry, by: str | list[str] = "variant") -> pd.DataFrame:
    """Conflict fraction per combination of transforms (a mask value: exactly these leaves), per
    group as in `conflict_by`; the columns of `conflict_by_transform`, with `mask` and
    `combination` (its leaves joined by ' + '; `(none)`: utterances that received none)."""
    chosen = "list_filter(leaves, lambda x, i: (mask >> (i - 1)) & 1 = 1)"
    return _received(
        tel, by, "unnest(augment_combos) AS combo",
        f"""mask, CASE WHEN mask = 0 THEN '(none)' WHEN leaves IS NULL THEN 'mask ' || mask
                       ELSE array_to_string({chosen}, ' + ') END AS combination""",
        "mask, combination", derive="combo.mask AS mask, combo.n AS received")


def conflict_across_trials(tel: Telemetry, by: list[str]) -> pd.DataFrame:
    """Per group of trials (e.g. variant x RawBoost algorithm): the mean of the trials' conflict
    fractions with a Student-t 95% interval across trials (the seeds' spread, NaN with one
    trial), beside the pooled fraction with its interval over steps."""
    per_trial = conflict_by(tel, "trial")
    pooled = conflict_by(tel, by)
    rows = []
    for key, grp in per_trial.groupby(by, dropna=False, sort=True):
        mean, low, high = across_runs_interval(grp["conflict_fraction"])
        rows.append((*(key if isinstance(key, tuple) else (key,)), len(grp), mean, low, high))
    across = pd.DataFrame(rows, columns=[*by, "trials_n", "trial_mean", "trial_low", "trial_high"])
    # keys as the pooled table types them (an all-null key, e.g. rawboost_algo of pipeline runs, reads as object)
    across = across.astype({k: pooled[k].dtype for k in by})
    return pooled.merge(across, on=by, how="left")


def conflict_by_trial(tel: Telemetry) -> pd.DataFrame:
    return conflict_by(tel, "trial")


def conflict_by_epoch(tel: Telemetry) -> pd.DataFrame:
    """Per (trial, epoch), from the step rows (so also for epochs without a log_epoch row)."""
    return conflict_by(tel, "epoch")


def conflict_by_rule(tel: Telemetry) -> pd.DataFrame:
    return conflict_by(tel, "rule")


def conflict_by_rawboost_algo(tel: Telemetry) -> pd.DataFrame:
    return conflict_by(tel, "rawboost_algo")


def conflict_by_layer(tel: Telemetry, per_trial: bool = True, norms: bool = False) -> pd.DataFrame:
    """Per-layer conflict fraction and mean cosine, per (trial, layer) or pooled per layer.

    `norms` adds the mean gradient norms of both paths (reads two more columns: ~2x slower).
    Aggregated per scan branch first (`Telemetry.partial_aggregate`), then combined: the same
    numbers as `avg` over the `layers` view, at about 2/3 of its CPU time on 100 M rows.
    """
    aggs = ["count(cos) AS n", "count_if(cos < 0) AS neg", "sum(cos) AS s"]
    extra = ""
    if norms:
        aggs += ["count(norm_orig) AS n_o", "sum(norm_orig) AS s_o", "count(norm_aug) AS n_a", "sum(norm_aug) AS s_a"]
        extra = ", sum(s_o) / nullif(sum(n_o), 0) AS mean_norm_orig, sum(s_a) / nullif(sum(n_a), 0) AS mean_norm_aug"
    keys = ["p.run_id", "p.trial_id", "p.layer"] if per_trial else ["p.layer"]
    group = ", ".join(keys)
    agg = f"""SELECT {group}, sum(n)::BIGINT AS rows, sum(neg) / nullif(sum(n), 0) AS conflict_fraction,
                     sum(s) / nullif(sum(n), 0) AS mean_cos{extra}
              FROM ({tel.partial_aggregate("layers", ["layer"], aggs)}) p GROUP BY {group}"""
    if per_trial:
        return tel.sql(
            f"""SELECT a.*, l.name FROM ({agg}) a LEFT JOIN layer_names l
                  ON a.run_id = l.run_id AND a.trial_id = l.trial_id AND a.layer = l.layer
                ORDER BY a.run_id, a.trial_id, a.layer"""
        )
    return tel.sql(
        f"""SELECT a.*, l.name FROM ({agg}) a LEFT JOIN
                (SELECT layer, first(name ORDER BY run_id, trial_id) AS name FROM layer_names GROUP BY layer) l
              ON a.layer = l.layer ORDER BY a.layer"""
    )


def module_of(name: str) -> str:
    """The module a parameter tensor belongs to, for grouping hundreds of tensors: the name up to
    its first numeric component (`encoder.layers.3.attention.q_proj.weight` -> `encoder.layers.3`),
    else without its last two components' leaf (`head.fc.weight` -> `head.fc`)."""
    parts = str(name).split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ".".join(parts[:-1]) or str(name)


def conflict_by_module_and_rule(tel: Telemetry) -> pd.DataFrame:
    """Per-layer conflict pooled per (variant, module): rows, conflict fraction, mean cosine, the
    number of tensors and the module's first layer index (its position in parameter order).
    The variant is the rule of dual-path trials, else the augment mode (`dpda_analysis.variant`)."""
    per = conflict_by_layer(tel, per_trial=True)
    if per.empty:
        return pd.DataFrame(columns=["variant", "module", "first_layer", "tensors", "rows", "conflict_fraction",
                                     "mean_cos"])
    variants = tel.trials[["run_id", "trial_id", "variant"]]
    per = per.merge(variants, on=["run_id", "trial_id"], how="left")
    per["variant"] = per["variant"].fillna("?").astype(str)
    per["module"] = per["name"].fillna(per["layer"].astype(str)).map(module_of)
    per["neg"] = per["conflict_fraction"] * per["rows"]
    per["sum_cos"] = per["mean_cos"] * per["rows"]
    out = per.groupby(["variant", "module"], sort=False).agg(
        first_layer=("layer", "min"), tensors=("layer", "nunique"), rows=("rows", "sum"),
        neg=("neg", "sum"), sum_cos=("sum_cos", "sum")).reset_index()
    out["conflict_fraction"] = out["neg"] / out["rows"].where(out["rows"] > 0)
    out["mean_cos"] = out["sum_cos"] / out["rows"].where(out["rows"] > 0)
    return out.drop(columns=["neg", "sum_cos"]).sort_values(["first_layer", "variant"]).reset_index(drop=True)


def layer_names(tel: Telemetry) -> pd.DataFrame:
    """(run_id, trial_id, layer, name) of the final attempt of each trial."""
    return tel.sql("SELECT run_id, trial_id, layer, name FROM layer_names ORDER BY ALL")


def layer_heatmap(
    tel: Telemetry, run_id: str, trial_id: str, bins: int = 60
) -> pd.DataFrame:
    """Mean cosine and conflict fraction per (layer, step bin) of one trial, long format.

    `bins` equal-width step bins span the trial's first to last step; `step_lo`/`step_hi` are
    each bin's inclusive step range.
    """
    if bins < 1:
        raise AnalysisError(f"layer_heatmap: bins must be >= 1, got {bins}")
    lo_hi = tel.sql(
        "SELECT min(step), max(step) FROM layers WHERE run_id = ? AND trial_id = ?", [run_id, trial_id]
    ).iloc[0]
    if pd.isna(lo_hi.iloc[0]):
        return pd.DataFrame(columns=["layer", "bin", "step_lo", "step_hi", "rows", "conflict_fraction", "mean_cos"])
    first, last = int(lo_hi.iloc[0]), int(lo_hi.iloc[1])
    width = max(1, math.ceil((last - first + 1) / bins))
    return tel.sql(
        f"""SELECT layer, (step - {first}) // {width} AS bin,
                   {first} + bin * {width} AS step_lo, {first} + (bin + 1) * {width} - 1 AS step_hi,
                   {_LAYER_CONFLICT}
            FROM layers WHERE run_id = ? AND trial_id = ?
            GROUP BY ALL ORDER BY layer, bin""",
        [run_id, trial_id],
    )


def cosine_histogram(
    tel: Telemetry, by: str = "variant", bins: int = 40, source: str = "steps"
) -> pd.DataFrame:
    """Histogram of cosines on [-1, 1] per group, computed in SQL.

    `source='steps'` uses the whole-model cosine of non-skipped steps; 'layers' every per-layer
    cosine. Columns: group, bin, lo, hi, count, fraction (of the group's total).
    """
    if source not in ("steps", "layers"):
        raise AnalysisError(f"cosine_histogram: source must be 'steps' or 'layers', got {source!r}")
    if bins < 1:
        raise AnalysisError(f"cosine_histogram: bins must be >= 1, got {bins}")
    group = "'all'" if by == "all" else f"CAST({by} AS VARCHAR)"
    if by != "all":
        _check_columns(tel, "steps" if source == "steps" else "layers", [by])
    where = "isfinite(cos)" + (" AND NOT skipped" if source == "steps" else "")
    hist = tel.sql(
        f"""SELECT {group} AS "group",
                   least(greatest(floor((cos + 1) / 2 * {bins}), 0), {bins - 1})::INTEGER AS bin,
                   count(*) AS count
            FROM {source} WHERE {where} GROUP BY ALL ORDER BY ALL"""
    )
    edges = np.linspace(-1.0, 1.0, bins + 1)
    hist["lo"] = edges[hist["bin"].to_numpy()]
    hist["hi"] = edges[hist["bin"].to_numpy() + 1]
    hist["fraction"] = hist["count"] / hist.groupby("group")["count"].transform("sum")
    return hist[["group", "bin", "lo", "hi", "count", "fraction"]]


def epoch_metrics(tel: Telemetry) -> pd.DataFrame:
    """Per (trial, epoch) dev metrics: the epochs table, else Tune's reported `metric`."""
    epochs = tel.sql(
        """SELECT run_id, trial_id, epoch, step, dev_loss, dev_eer, train_loss_orig,
                  train_loss_aug, conflict_fraction, lr, wall_time
           FROM epochs ORDER BY run_id, trial_id, epoch"""
    )
    tune = tel.tune_results.rename(columns={tel.metric: "dev_eer"})
    have = set(map(tuple, epochs.loc[epochs["dev_eer"].notna(), ["run_id", "trial_id"]].to_numpy()))
    if len(tune):
        keep = [k not in have for k in zip(tune["run_id"], tune["trial_id"])]
        tune = tune.loc[keep]
    if not len(tune):
        return epochs
    return pd.concat([epochs, tune], ignore_index=True).sort_values(["run_id", "trial_id", "epoch"])


def trial_summary(tel: Telemetry) -> pd.DataFrame:
    """Per trial: settings, Tune params, conflict fraction (with its interval over steps), best
    epoch's dev EER, the saved model's dev EER (with its bootstrap interval) and the status."""
    conflicts = conflict_by_trial(tel).drop(columns=["rule", "augment_mode", "variant", "strength", "rawboost_algo"])
    metrics = epoch_metrics(tel)
    best_rows = []
    for (run_id, trial_id), grp in metrics.groupby(["run_id", "trial_id"], sort=False):
        scored = grp[grp["dev_eer"].notna()]
        row = {"run_id": run_id, "trial_id": trial_id, "epochs": int(grp["epoch"].nunique())}
        if len(scored):
            best = scored.sort_values(["dev_eer", "epoch"]).iloc[0]
            row.update(
                best_dev_eer=float(best["dev_eer"]),
                best_epoch=int(best["epoch"]),
                epochs_to_best=int(best["epoch"] - grp["epoch"].min() + 1),
                last_epoch_dev_eer=float(scored.sort_values("epoch")["dev_eer"].iloc[-1]),
            )
        best_rows.append(row)
    best = pd.DataFrame(
        best_rows,
        columns=["run_id", "trial_id", "epochs", "best_dev_eer", "best_epoch", "epochs_to_best", "last_epoch_dev_eer"],
    )
    out = tel.trials.merge(conflicts, on=["run_id", "trial_id"], how="left")
    out = out.merge(best, on=["run_id", "trial_id"], how="left")
    out = out.merge(read_outcomes(tel.trials, tel.location), on=["run_id", "trial_id"], how="left")
    front = ["run_id", "trial_id", "status", "variant", "rule", "augment_mode", "strength", "rawboost_algo", "steps", "conflict_fraction",
             "conflict_low", "conflict_high", "mean_cos", "model_dev_eer", "model_dev_eer_low", "model_dev_eer_high",
             "best_dev_eer", "best_epoch", "epochs_to_best", "last_epoch_dev_eer", "epochs"]
    rest = [c for c in out.columns if c not in front]
    return out[front + rest]


def spearman(x: pd.Series, y: pd.Series) -> dict[str, float]:
    """Spearman's rho with its two-sided p-value and n (NaN below 3 pairs)."""
    pairs = pd.concat([x, y], axis=1).astype(float).dropna()
    if len(pairs) < 3 or pairs.iloc[:, 0].nunique() < 2 or pairs.iloc[:, 1].nunique() < 2:
        return {"rho": float("nan"), "p": float("nan"), "n": len(pairs)}
    result = stats.spearmanr(pairs.iloc[:, 0], pairs.iloc[:, 1])
    return {"rho": float(result.statistic), "p": float(result.pvalue), "n": len(pairs)}


def eer_vs_conflict(tel: Telemetry) -> pd.DataFrame:
    """Per trial: conflict fraction against best dev EER and epochs-to-best, with the status.

    `attrs['spearman']` maps each outcome to Spearman's rho, p-value and n across the completed
    trials (all trials when none has a status): a trial ASHA stopped after one epoch has a
    best EER of a different kind, and ranking it with the others would mix the two."""
    summary = trial_summary(tel)
    cols = ["run_id", "trial_id", "status", "variant", "rule", "augment_mode", "rawboost_algo", "strength", "conflict_fraction",
            "conflict_low", "conflict_high", "best_dev_eer", "best_epoch", "epochs_to_best", "epochs"]
    out = summary[cols].dropna(subset=["conflict_fraction", "best_dev_eer"]).reset_index(drop=True)
    done = out[out["status"] == COMPLETED] if (out["status"] == COMPLETED).any() else out
    out.attrs["spearman"] = {
        "best_dev_eer": spearman(done["conflict_fraction"], done["best_dev_eer"]),
        "epochs_to_best": spearman(done["conflict_fraction"], done["epochs_to_best"]),
    }
    out.attrs["spearman_over"] = "completed trials" if done is not out else "all trials"
    return out


def comparison_table(tel: Telemetry) -> pd.DataFrame:
    """Trials ranked by the saved model's dev EER, then the best epoch's (trials without a saved
    model come after those with one), then conflict fraction; with the search's params."""
    table = trial_summary(tel).drop(columns=["config_json", "run_dir"], errors="ignore")
    table = table.sort_values(["model_dev_eer", "best_dev_eer", "conflict_fraction"], na_position="last")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def summary(tel: Telemetry) -> dict[str, object]:
    """Headline numbers for a report. `best_trial` is the trial whose saved model has the lowest
    dev EER (`model_dev_eer` and its interval); `best_epoch_dev_eer` is that trial's best epoch's
    dev EER, which is lower by selection and not what its model.pt scores. Without any saved
    model the best epoch of any trial is the headline, named so."""
    overall = conflict_fraction(tel).iloc[0]
    counts = tel.sql(
        """SELECT (SELECT count(*) FROM layers) AS layer_rows, (SELECT count(*) FROM epochs) AS epochs,
                  (SELECT count(*) FROM attempts WHERE attempt > 0) AS restarts"""
    ).iloc[0]
    table = comparison_table(tel)
    best = table.dropna(subset=["best_dev_eer"]).head(1)
    value = lambda col: None if best.empty or pd.isna(best[col].iloc[0]) else float(best[col].iloc[0])
    scalar = lambda v: None if pd.isna(v) else float(v)
    return {
        "runs_dir": str(tel.path),
        "trials": len(tel.trials),
        "trials_with_telemetry": int(tel.trials["has_telemetry"].sum()),
        "trials_completed": int((table["status"] == COMPLETED).sum()),
        "steps": int(overall["steps"]),
        "skipped_steps": int(overall["skipped_steps"]),
        "layer_rows": int(counts["layer_rows"]),
        "epochs": int(counts["epochs"]),
        "restarts": int(counts["restarts"]),
        "conflict_fraction": scalar(overall["conflict_fraction"]),
        "conflict_low": scalar(overall["conflict_low"]),
        "conflict_high": scalar(overall["conflict_high"]),
        "mean_cos": scalar(overall["mean_cos"]),
        "best_trial": None if best.empty else f"{best['run_id'].iloc[0]}/{best['trial_id'].iloc[0]}",
        "model_dev_eer": value("model_dev_eer"),
        "model_dev_eer_low": value("model_dev_eer_low"),
        "model_dev_eer_high": value("model_dev_eer_high"),
        "best_epoch_dev_eer": value("best_dev_eer"),
        "best_epoch": None if best.empty or pd.isna(best["best_epoch"].iloc[0]) else int(best["best_epoch"].iloc[0]),
    }


def _check_columns(tel: Telemetry, view: str, cols: list[str]) -> None:
    known = set(tel.sql(f"SELECT * FROM {view} LIMIT 0").columns)
    unknown = [c for c in cols if c not in known]
    if unknown:
        raise AnalysisError(f"no column {unknown[0]!r} in {view}; known: {', '.join(sorted(known))}")
