"""Figures of the evaluated models' test-set EERs (a trained run's eval/), per set and per attack."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpda_analysis.report.common import empty_figure, error_bars, trial_label


def fig_test_eer(tests: pd.DataFrame, multi_run: bool, *, title: str) -> go.Figure:
    """Per evaluated set (factor `all`): each model's EER with its bootstrap interval."""
    rows = tests[tests["factor"] == "all"]
    if rows.empty:
        return empty_figure(title, "no evaluated model (a trained run's eval/metrics.csv)")
    fig = go.Figure()
    for set_name, grp in rows.groupby("set", sort=True):
        labels = [trial_label(r, t, multi_run) for r, t in zip(grp["run_id"], grp["trial_id"])]
        eer = grp["eer"] * 100
        fig.add_trace(go.Scatter(
            x=eer, y=[f"trial {lab}" for lab in labels], mode="markers", name=str(set_name),
            error_x=error_bars(grp["eer"], grp["eer_low"], grp["eer_high"], 100),
            customdata=np.stack([grp["eer_low"] * 100, grp["eer_high"] * 100, grp["trials"]], axis=1),
            hovertemplate=f"{set_name}, %{{y}}<br>EER %{{x:.2f}}% [%{{customdata[0]:.2f}}, "
            "%{customdata[1]:.2f}]<br>%{customdata[2]} utterances<extra></extra>"))
    n = rows[["run_id", "trial_id"]].drop_duplicates().shape[0]
    fig.update_layout(title=title, xaxis_title="EER (%), 95% bootstrap interval",
                      yaxis={"type": "category", "autorange": "reversed"}, scattermode="group",
                      legend_title="test set", height=int(min(1200, max(300, 60 * n + 150))))
    return fig


def fig_test_eer_by_attack(tests: pd.DataFrame, multi_run: bool, *, title: str) -> go.Figure:
    """Per (set, attack): each model's EER with its bootstrap interval."""
    rows = tests[tests["factor"] == "attack"]
    if rows.empty:
        return empty_figure(title, "no per-attack breakdown (eval/<set>.breakdown.csv)")
    fig = go.Figure()
    for (run_id, trial_id), grp in rows.groupby(["run_id", "trial_id"], sort=True):
        label = trial_label(run_id, trial_id, multi_run)
        fig.add_trace(go.Scatter(
            x=grp["eer"] * 100, y=grp["set"] + ": " + grp["value"], mode="markers", name=f"trial {label}",
            error_x=error_bars(grp["eer"], grp["eer_low"], grp["eer_high"], 100),
            customdata=np.stack([grp["eer_low"] * 100, grp["eer_high"] * 100, grp["trials"]], axis=1),
            hovertemplate=f"trial {label}, %{{y}}<br>EER %{{x:.2f}}% [%{{customdata[0]:.2f}}, "
            "%{customdata[1]:.2f}]<br>%{customdata[2]} utterances<extra></extra>"))
    n = rows[["set", "value"]].drop_duplicates().shape[0]
    n_trials = rows[["run_id", "trial_id"]].drop_duplicates().shape[0]
    fig.update_layout(title=title, xaxis_title="EER (%), 95% bootstrap interval",
                      yaxis={"type": "category", "autorange": "reversed"}, scattermode="group",
                      legend_title="model", height=int(min(1600, max(320, (14 + 6 * n_trials) * n + 150))))
    return fig
