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
from dpda_analysis.layout import RUN_EVAL_DIR, RUN_SUMMARY, SEARCH_SPACE_FILE
from dpda_analysis.location import Location

if TYPE_CHECKING:
    import plotly.graph_objects as go

TITLE = "EER of the evaluated model per set, with 95% bootstrap intervals"
_GROUP_OF_FACTOR = {"family": "real set: per synthesizer family", "prompt_speaker": "real set: per speaker",
                    "language": "real set: per language", "gender": "real set: per voice gender"}


COMPLETED, STOPPED, UNFINISHED = "completed", "stopped early", "unfinished"


_LOCAL = Location(pafs.LocalFileSystem(), "/")


def _json(loc: Location, path: Path) -> object:
    """The parsed JSON file on `loc`'s filesystem; None when missing or not valid JSON."""
    text = loc.read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _csv(loc: Location, path: Path, **kwargs: object) -> pd.DataFrame | None:
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
        record = _json(loc, loc.path(run_dir) / RUN_SUMMARY)
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
            record = _json(loc, path)
            params = record.get("params", []) if isinstance(record, dict) else None
            if not isinstance(params, list):
                return None
            return {p["key"]: p for p in params if isinstance(p, dict) and "key" in p}
    return None


_TEST_COLUMNS = ["run_id", "trial_id", "set", "factor", "value", "eer", "eer_low", "eer_high", "trials"]


def read_test_eers(trials: pd.DataFrame, loc: Location = _LOCAL) -> pd.DataFrame:
    """Every evaluated model's test-set EERs: per set (factor `all`) from the run dir's
    eval/metrics.csv, and per attack or condition from eval/<set>.breakdown.csv; EERs as
    fractions with their 95% bootstrap interval (NaN where it was not computed)."""
    frames = []
    for run_id, trial_id, run_dir in zip(trials["run_id"], trials["trial_id"], trials["run_dir"]):
        folder = loc.path(run_dir) / RUN_EVAL_DIR
        sets = _csv(loc, folder / "metrics.csv")
        if sets is None:
            continue
        parts = [pd.DataFrame({"set": sets["set"].astype(str), "factor": "all", "value": "pooled",
                               "eer": sets["eer"], "eer_low": sets.get("eer_low", math.nan),
                               "eer_high": sets.get("eer_high", math.nan),
                               "trials": sets["n_bonafide"] + sets["n_spoof"]})]
        for name in sets["set"].astype(str):
            b = _csv(loc, folder / f"{name}.breakdown.csv", keep_default_na=False, na_values=[""])
            if b is not None:
                b = b[b["factor"] != "all"]  # the pooled row repeats metrics.csv
                parts.append(pd.DataFrame({"set": name, "factor": b["factor"].astype(str),
                                           "value": b["value"].astype(str), "eer": b["eer"],
                                           "eer_low": b.get("eer_low", math.nan),
                                           "eer_high": b.get("eer_high", math.nan),
                                           "trials": b["n_bonafide"] + b["n_spoof"]}))
        frame = pd.concat(parts, ignore_index=True)
        frame.insert(0, "trial_id", trial_id)
        frame.insert(0, "run_id", run_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=_TEST_COLUMNS)
    return pd.concat(frames, ignore_index=True)[_TEST_COLUMNS]


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


def fig_evaluation(table: pd.DataFrame) -> go.Figure:
    """Dots with interval whiskers, one row per set or subset, grouped by colour."""
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
    fig.update_layout(title=TITLE, xaxis_title="EER (%)", height=int(min(1600, 160 + 22 * len(table))),
                      yaxis={"autorange": "reversed", "type": "category"}, legend={"orientation": "h", "y": -0.1})
    return fig
