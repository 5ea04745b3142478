"""The report's evaluation figure: each evaluated set's EER with its bootstrap interval, and the
real-audio set's EER per family, speaker, language and held-out protocol.

Why in the report: the conflict figures say how training behaved; whether the model is any good
away from the synthetic corpus is what the real-audio set says, and the intervals say how much
of a difference between two bars is noise. Reads the CSV files `dpda quickstart` (and `dpda eval`
plus `dpda.data.realset.evaluate.summarize`) write into an eval folder: `metrics.csv` and, when the
real set was scored, `real.summary.csv`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

TITLE = "EER of the evaluated model per set, with 95% bootstrap intervals"
_GROUP_OF_FACTOR = {"family": "real set: per synthesizer family", "prompt_speaker": "real set: per speaker",
                    "language": "real set: per language", "gender": "real set: per voice gender"}


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
