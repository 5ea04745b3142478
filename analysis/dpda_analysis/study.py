"""A `dpda study`'s results, from its runs' files: one row per variant x seed, the paired-difference
table against the baseline, and the files a study folder holds (runs.csv, study.csv, study.md,
study.html).

Why here rather than in dpda: the numbers come only from files every run leaves (Tune's
params.json with the run's variant and seed, the Trainer's summary.json, the telemetry), so a
study copied to a laptop, or read from object storage, is tabulated without torch or Ray; and
`dpda study` calls the same functions at its end.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from dpda_analysis.evaluation import read_json
from dpda_analysis.layout import RUN_SUMMARY
from dpda_analysis.location import Location, resolve
from dpda_analysis import paired
from dpda_analysis.paired import ALPHA, paired_differences, t_interval
from dpda_analysis.report.study import study_figure, study_html

PARAMS_FILE = "params.json"  # Tune's, in each trial folder: the grid point ({"variant", "seed"})
RUNS_CSV = "runs.csv"
STUDY_CSV = "study.csv"
STUDY_MD = "study.md"
STUDY_HTML = "study.html"
EVAL_PREFIX = "eval_eer."


def metric_heading(metric: str) -> tuple[str, float, str]:
    """(heading, scale to the unit shown, unit of a difference) of a study metric."""
    if metric == "epochs":
        return "epochs run", 1.0, "epochs"
    if metric.startswith(EVAL_PREFIX):
        return f"{metric[len(EVAL_PREFIX):]} EER %", 100.0, "points"
    return {"dev_eer": "dev EER %", "best_dev_eer": "best-epoch dev EER %",
            "conflict_fraction": "conflict %"}.get(metric, metric), 100.0, "points"


def _trial_dirs(exp: Location) -> list[str]:
    infos = exp.fs.get_file_info(pafs.FileSelector(exp.root, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory and i.base_name.startswith("trial_"))


def _conflict_by_trial(exp: Location) -> dict[str, float]:
    """Each trial's whole-run conflict fraction from its telemetry (NaN-free: trials without a
    counted step are absent)."""
    from dpda_analysis.errors import AnalysisError
    from dpda_analysis.queries import conflict_by
    from dpda_analysis.store import open_telemetry

    try:
        table = conflict_by(open_telemetry(exp), "trial")
    except AnalysisError:  # no telemetry at all (telemetry.enabled: false)
        return {}
    return {str(r.trial_id): float(r.conflict_fraction) for r in table.itertuples() if math.isfinite(r.conflict_fraction)}


def read_runs(experiment: str | os.PathLike | Location, filesystem: Any = None) -> pd.DataFrame:
    """One row per trial folder of a study: variant, seed, trial_id, finished (summary.json
    written), epochs, dev_eer (the saved model's), best_dev_eer, conflict_fraction and one
    eval_eer.<set> per evaluated set; sorted by variant order of appearance, then seed."""
    exp = resolve(experiment, filesystem)
    conflict = _conflict_by_trial(exp)
    rows = []
    for name in _trial_dirs(exp):
        trial = exp.child(name)
        params = read_json(trial.child(PARAMS_FILE))
        if not params or "variant" not in params or "seed" not in params:
            continue
        trial_id = name.removeprefix("trial_")
        summary = read_json(trial.child(RUN_SUMMARY)) or {}
        row: dict[str, Any] = {
            "variant": params["variant"], "seed": int(params["seed"]), "trial_id": trial_id,
            "finished": bool(summary.get("final_dev_eer") is not None),
            "epochs": summary.get("epochs", np.nan),
            "dev_eer": summary.get("final_dev_eer", np.nan),
            "best_dev_eer": summary.get("best_dev_eer", np.nan),
            "conflict_fraction": conflict.get(trial_id, np.nan),
        }
        for set_name, eer in (summary.get("eval_eer") or {}).items():
            row[EVAL_PREFIX + set_name] = eer
        rows.append(row)
    runs = pd.DataFrame(rows, columns=["variant", "seed", "trial_id", "finished", "epochs", "dev_eer", "best_dev_eer",
                                       "conflict_fraction"] if not rows else None)
    return runs.sort_values(["variant", "seed"], kind="stable").reset_index(drop=True) if not runs.empty else runs


def variant_summary(runs: pd.DataFrame, metrics: Sequence[str], variants: Sequence[str]) -> pd.DataFrame:
    """Per variant and metric: finished seeds, mean and 95% t-interval across seeds (rates
    clipped to [0, 1])."""
    rows = []
    for variant in variants:
        sub = runs[(runs["variant"] == variant) & runs["finished"]]
        for metric in metrics:
            values = sub[metric] if metric in sub else pd.Series(dtype=float)
            mean, low, high = t_interval(values)
            if metric_heading(metric)[1] == 100.0 and np.isfinite(low):
                low, high = max(low, 0.0), min(high, 1.0)
            rows.append({"variant": variant, "metric": metric, "seeds": int(values.notna().sum()),
                         "mean": mean, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["variant", "metric", "seeds", "mean", "low", "high"])


def summary_markdown(summary: pd.DataFrame, metrics: Sequence[str], variants: Sequence[str]) -> str:
    lines = ["| variant | " + " | ".join(metric_heading(m)[0] for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    table = summary.set_index(["variant", "metric"])
    for variant in variants:
        cells = []
        for metric in metrics:
            r = table.loc[(variant, metric)]
            cells.append(paired.cell(r["mean"], r["low"], r["high"], metric_heading(metric)[1]) + f" (n={int(r['seeds'])})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def differences_markdown(tests: pd.DataFrame) -> str:
    return paired.differences_markdown(tests, metric_heading)


def study_markdown(title: str, runs: pd.DataFrame, tests: pd.DataFrame, metrics: Sequence[str],
                   variants: Sequence[str], baseline: str, command: str) -> str:
    """study.md: what was run, the per-variant table and the paired differences."""
    seeds = sorted(runs["seed"].unique()) if not runs.empty else []
    finished = int(runs["finished"].sum()) if not runs.empty else 0
    return (
        f"# {title}\n\nWritten by `{command}` (this file is overwritten).\n\n"
        f"**Runs.** {len(variants)} variants x {len(seeds)} seeds ({', '.join(map(str, seeds))}), each seed shared by "
        f"every variant (same initialisation and batch order), equal epoch budgets and the trainer's own patience; "
        f"{finished} of {len(runs)} runs finished. Per run: `{RUNS_CSV}`.\n\n"
        "**Per variant.** Mean over finished seeds [95% Student-t interval of the mean, rates clipped to 0-100 %].\n\n"
        + summary_markdown(variant_summary(runs, metrics, variants), metrics, variants)
        + f"\n\n**Paired differences** (variant minus *{baseline}*, same seed): mean [95% t-interval], paired t-test, "
        f"Holm correction over all {int(tests['p'].notna().sum())} comparisons (family-wise error {ALPHA}).\n\n"
        + differences_markdown(tests) + "\n"
    )


def write_study(experiment: str | os.PathLike | Location, *, baseline: str, variants: Sequence[str],
                metrics: Sequence[str], title: str, command: str, filesystem: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the runs and write runs.csv, study.csv (the paired differences), study.md and
    study.html into the study folder; returns (runs, differences)."""
    exp = resolve(experiment, filesystem)
    runs = read_runs(exp)
    if not runs.empty:  # the SPEC's variant order, then seed
        rank = {v: i for i, v in enumerate(variants)}
        runs = runs.sort_values(["variant", "seed"], key=lambda c: c.map(rank) if c.name == "variant" else c,
                                kind="stable").reset_index(drop=True)
    for metric in metrics:  # a metric no run has (e.g. an eval set a failed run never scored) stays a column
        if metric not in runs:
            runs[metric] = np.nan
    finished = runs[runs["finished"]] if not runs.empty else runs
    tests = paired_differences(finished, baseline, list(metrics), variants=list(variants))
    exp.child(RUNS_CSV).write_text(runs.to_csv(index=False))
    exp.child(STUDY_CSV).write_text(tests.to_csv(index=False))
    exp.child(STUDY_MD).write_text(study_markdown(title, runs, tests, metrics, variants, baseline, command))
    summary = variant_summary(runs, metrics, variants)
    headings = {m: metric_heading(m)[:2] for m in metrics}
    shown = pd.DataFrame([{"variant": r.variant, "metric": metric_heading(r.metric)[0], "seed pairs": r.seeds,
                           "difference [95% interval]": paired.cell(r.diff, r.low, r.high, metric_heading(r.metric)[1]),
                           "p (paired t)": f"{r.p:.3g}", "p (Holm)": f"{r.p_holm:.3g}"} for r in tests.itertuples()])
    exp.child(STUDY_HTML).write_text(study_html(title, study_figure(summary, headings, variants, baseline), shown, baseline))
    return runs, tests
