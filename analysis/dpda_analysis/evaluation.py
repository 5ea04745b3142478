"""The report's evaluation figure: each evaluated set's EER with its bootstrap interval, and the
real-audio set's EER per family, speaker, language and held-out protocol.

Why in the report: the conflict figures say how training behaved; whether the model is any good
away from the synthetic corpus is what the real-audio set says, and the intervals say how much
of a difference between two bars is noise. Reads the CSV files `dpda quickstart` (and `dpda eval`
plus `dpda.data.realset.evaluate.summarize`) write into an eval folder: `metrics.csv` and, when the
real set was scored, `real.summary.csv`.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow.fs as pafs

from dpda_analysis.discover import TUNE_PARAMS
from dpda_analysis.layout import (EVAL_METRICS, RUN_EVAL_DIR, RUN_SUMMARY, SEARCH_SPACE_FILE, eval_breakdown_file,
                                  eval_keys_file, eval_scores_file)
from dpda_analysis.location import Location

if TYPE_CHECKING:
    import plotly.graph_objects as go

TITLE = "EER of the evaluated model per set, with 95% bootstrap intervals"
_GROUP_OF_FACTOR = {"family": "real set: per synthesizer family", "prompt_speaker": "real set: per speaker",
                    "language": "real set: per language", "gender": "real set: per voice gender"}


COMPLETED, STOPPED, UNFINISHED = "completed", "stopped early", "unfinished"


_LOCAL = Location(pafs.LocalFileSystem(), "/")


def read_json(loc: Location, path: Path | None = None) -> object:
    """The parsed JSON file at `path` (default: `loc`'s root) on `loc`'s filesystem; None when
    missing or not valid JSON."""
    text = loc.read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def read_csv(loc: Location, path: Path, **kwargs: object) -> pd.DataFrame | None:
    """The CSV file on `loc`'s filesystem as a frame; None when missing."""
    text = loc.read_text(path)
    return None if text is None else pd.read_csv(io.StringIO(text), **kwargs)


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def read_outcomes(trials: pd.DataFrame, loc: Location = _LOCAL) -> pd.DataFrame:
    """Per trial (`trials`: run_id, trial_id, run_dir on `loc`'s filesystem): status and the saved
    model's dev EER with its bootstrap interval, from the run dir's summary.json. No summary.json:
    a Tune trial was stopped early (ASHA, or killed); a plain run is unfinished."""
    rows = []
    for run_id, trial_id, run_dir in zip(trials["run_id"], trials["trial_id"], trials["run_dir"]):
        record = read_json(loc, loc.path(run_dir) / RUN_SUMMARY)
        if isinstance(record, dict) and record:
            status = COMPLETED
        else:
            record = {}
            status = STOPPED if loc.is_file(loc.path(run_dir) / TUNE_PARAMS) else UNFINISHED
        rows.append({"run_id": run_id, "trial_id": trial_id, "status": status,
                     "model_dev_eer": _number(record.get("final_dev_eer")),
                     "model_dev_eer_low": _number(record.get("final_dev_eer_low")),
                     "model_dev_eer_high": _number(record.get("final_dev_eer_high"))})
    return pd.DataFrame(rows, columns=["run_id", "trial_id", "status", "model_dev_eer", "model_dev_eer_low",
                                       "model_dev_eer_high"])


def read_search_space(root: str | os.PathLike, run_dirs: list[str], loc: Location = _LOCAL) -> dict[str, dict] | None:
    """Searched keys -> their distribution ({'kind', 'log', ...}) from the experiment's search-space
    snapshot (in `root` or a run dir's parent, on `loc`'s filesystem); None when there is none
    (not a `dpda tune` run)."""
    for folder in [loc.path(os.fspath(root)), *sorted({loc.path(d).parent for d in run_dirs})]:
        path = folder / SEARCH_SPACE_FILE
        if loc.is_file(path):
            record = read_json(loc, path)
            params = record.get("params", []) if isinstance(record, dict) else None
            if not isinstance(params, list):
                return None
            return {p["key"]: p for p in params if isinstance(p, dict) and "key" in p}
    return None


_METRIC_COLUMNS = [f"{m}{s}" for m in ("eer", "min_dcf", "act_dcf", "cllr") for s in ("", "_low", "_high")]
_TEST_COLUMNS = ["run_id", "trial_id", "set", "factor", "value", *_METRIC_COLUMNS, "trials", "threshold",
                 "bayes_threshold", "calibrated", "model"]
EVALUATION_RUN = "evaluation"  # run_id of the eval folder given to the report (`--evaluation`)


def evaluated_folders(trials: pd.DataFrame, evaluation: str | os.PathLike | None = None,
                      loc: Location = _LOCAL) -> pd.DataFrame:
    """(run_id, trial_id, eval_dir) of every evaluated model: each trial's run dir eval/ that holds
    a metrics.csv, then the report's `evaluation` folder (on the local filesystem). That folder's
    model is named after the trial whose run dir holds it (metrics.csv's `model` column), else after
    the model file's folder, else the eval folder's name."""
    rows = [(r, t, str(loc.path(d) / RUN_EVAL_DIR)) for r, t, d in zip(trials["run_id"], trials["trial_id"],
                                                                       trials["run_dir"])
            if loc.is_file(loc.path(d) / RUN_EVAL_DIR / EVAL_METRICS)]
    folders = pd.DataFrame(rows, columns=["run_id", "trial_id", "eval_dir"]).assign(location="run")
    if evaluation is None or not (Path(evaluation) / EVAL_METRICS).is_file():
        return folders
    metrics = pd.read_csv(Path(evaluation) / EVAL_METRICS)
    model = str(metrics["model"].iloc[0]) if "model" in metrics and len(metrics) else ""
    owner = {Path(str(d)).name: (r, t) for r, t, d in zip(trials["run_id"], trials["trial_id"], trials["run_dir"])}
    run_id, trial_id = owner.get(Path(model).parent.name, (EVALUATION_RUN, Path(model).parent.name or Path(evaluation).name))
    extra = pd.DataFrame([(run_id, trial_id, str(evaluation), "local")], columns=[*folders.columns])
    # the same model evaluated in its run dir and in the report's folder: the folder wins (it was asked for)
    folders = folders[~((folders["run_id"] == run_id) & (folders["trial_id"] == trial_id))]
    return pd.concat([folders, extra], ignore_index=True)


def _where(location: str, loc: Location) -> Location:
    return _LOCAL if location == "local" else loc


def is_calibrated(row: pd.Series | dict) -> bool:
    """Whether a metrics.csv row's scores are calibrated LLRs (a `calibrated` column, or a score kind
    naming LLRs): only then does the Bayes threshold mean a decision."""
    flag = row.get("calibrated")
    if flag is not None and not (isinstance(flag, float) and math.isnan(flag)):
        return str(flag).strip().lower() in ("true", "1", "yes")
    kind = row.get("score_kind", row.get("score"))
    return isinstance(kind, str) and "llr" in kind.lower()


def _metric_frame(table: pd.DataFrame) -> dict[str, object]:
    return {c: table[c] if c in table else math.nan for c in _METRIC_COLUMNS}


def read_test_eers(folders: pd.DataFrame, loc: Location = _LOCAL) -> pd.DataFrame:
    """Every evaluated model's test-set metrics (`folders` from `evaluated_folders`): per set (factor
    `all`) from metrics.csv, and per attack or condition from <set>.breakdown.csv; EER, minDCF,
    actDCF and Cllr with their 95% bootstrap intervals (NaN where not computed; EERs as fractions)."""
    frames = []
    for run_id, trial_id, folder_name, where in folders[["run_id", "trial_id", "eval_dir", "location"]].itertuples(
            index=False):
        fs = _where(where, loc)
        folder = fs.path(folder_name)
        sets = read_csv(fs, folder / EVAL_METRICS)
        if sets is None:
            continue
        calibrated = [is_calibrated(r) for _, r in sets.iterrows()]
        parts = [pd.DataFrame({"set": sets["set"].astype(str), "factor": "all", "value": "pooled",
                               **_metric_frame(sets), "trials": sets["n_bonafide"] + sets["n_spoof"],
                               "threshold": sets.get("threshold", math.nan),
                               "bayes_threshold": sets.get("bayes_threshold", math.nan),
                               "calibrated": calibrated, "model": sets.get("model", "")})]
        for name in sets["set"].astype(str):
            b = read_csv(fs, folder / eval_breakdown_file(name), keep_default_na=False, na_values=[""])
            if b is not None:
                b = b[b["factor"] != "all"]  # the pooled row repeats metrics.csv
                parts.append(pd.DataFrame({"set": name, "factor": b["factor"].astype(str),
                                           "value": b["value"].astype(str), **_metric_frame(b),
                                           "trials": b["n_bonafide"] + b["n_spoof"],
                                           "threshold": b.get("threshold", math.nan)}))
        frame = pd.concat(parts, ignore_index=True)
        frame.insert(0, "trial_id", trial_id)
        frame.insert(0, "run_id", run_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=_TEST_COLUMNS)
    return pd.concat(frames, ignore_index=True).reindex(columns=_TEST_COLUMNS)


def read_scored_set(folders: pd.DataFrame, run_id: str, trial_id: str, set_name: str,
                    loc: Location = _LOCAL) -> pd.DataFrame | None:
    """One evaluated set's trials: utt, score (from its score file), bonafide (bool), attack and
    condition columns (from its keys file); None when either file is missing (an eval folder
    written before dpda eval wrote keys)."""
    row = folders[(folders["run_id"] == run_id) & (folders["trial_id"] == trial_id)]
    if row.empty:
        return None
    fs = _where(row["location"].iloc[0], loc)
    folder = fs.path(row["eval_dir"].iloc[0])
    text = fs.read_text(folder / eval_scores_file(set_name))
    keys = read_csv(fs, folder / eval_keys_file(set_name), keep_default_na=False, dtype=str)
    if text is None or keys is None:
        return None
    scores = pd.read_csv(io.StringIO(text), sep=r"\s+", header=None, names=["utt", "score"], dtype={"utt": str})
    if len(keys) == len(scores) and (keys["utt"].to_numpy() == scores["utt"].to_numpy()).all():
        scored = keys.assign(score=scores["score"].to_numpy())  # dpda eval writes both in one order
    else:
        scored = keys.merge(scores, on="utt", how="inner", validate="one_to_one")
    return scored.assign(bonafide=scored["label"] == "bonafide")


def read_evaluation(eval_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per bar: group, label, eer, eer_low, eer_high, trials (EERs as fractions; the
    interval is NaN where it was not computed). Empty when the folder has no metrics.csv."""
    folder = Path(eval_dir)
    rows: list[dict] = []
    metrics = folder / "metrics.csv"
    if metrics.is_file():
        for _, r in pd.read_csv(metrics).iterrows():
            rows.append({"group": "evaluated sets", "label": str(r["set"]), "eer": r["eer"],
                         "eer_low": r.get("eer_low", float("nan")), "eer_high": r.get("eer_high", float("nan")),
                         "trials": int(r["n_bonafide"] + r["n_spoof"])})
    summary = folder / "real.summary.csv"
    if summary.is_file():
        for _, r in pd.read_csv(summary, keep_default_na=False, na_values=[""]).iterrows():
            if r["scope"] == "all":
                if r["factor"] == "all":
                    continue  # the same trials as the `real` row of metrics.csv
                group, label = _GROUP_OF_FACTOR.get(r["factor"], f"real set: {r['factor']}"), str(r["value"])
            else:
                group, label = "real set: held-out protocols", str(r["scope"])
            rows.append({"group": group, "label": label, "eer": r["eer"], "eer_low": r["eer_low"],
                         "eer_high": r["eer_high"], "trials": int(r["n_bonafide"] + r["n_spoof"])})
    return pd.DataFrame(rows, columns=["group", "label", "eer", "eer_low", "eer_high", "trials"])


def fig_evaluation(table: pd.DataFrame, model: str | None = None) -> go.Figure:
    """Dots with interval whiskers, one row per set or subset, grouped by colour; the title names
    the evaluated `model`."""
    import plotly.graph_objects as go  # here: `dpda tune` imports this module's file names

    fig = go.Figure()
    for group, rows in table.groupby("group", sort=False):
        eer = 100 * rows["eer"]
        fig.add_trace(go.Scatter(
            x=eer, y=[f"{g}: {lab}" if g != "evaluated sets" else lab for g, lab in zip(rows["group"], rows["label"])],
            mode="markers", name=group,
            error_x={"type": "data", "symmetric": False, "array": 100 * rows["eer_high"] - eer,
                     "arrayminus": eer - 100 * rows["eer_low"]},
            customdata=rows[["trials"]].to_numpy(),
            hovertemplate="%{y}<br>EER %{x:.2f}%<br>%{customdata[0]} trials<extra></extra>"))
    fig.update_layout(title=f"{TITLE}: {model}" if model else TITLE, xaxis_title="EER (%), 95% bootstrap interval", height=int(min(1600, 160 + 22 * len(table))),
                      yaxis={"autorange": "reversed", "type": "category"}, legend={"orientation": "h", "y": -0.1})
    return fig
