"""Figures comparing alignment rules: conflict per (rule, RawBoost algorithm), cosine histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpda_analysis.report.common import empty_figure, error_bars


def fig_conflict_by_rule_algo(table: pd.DataFrame, *, title: str) -> go.Figure:
    """One bar per (rule, algorithm): with several trials (seeds) their mean and a t-interval
    across them; with one, its fraction and the (narrower, steps are correlated) interval over steps."""
    if table.empty:
        return empty_figure(title, "no step telemetry")
    table = table.assign(algo=table["rawboost_algo"].map(lambda a: "none" if pd.isna(a) else f"algo {int(a)}"))
    several = table["trials_n"] >= 2
    value = table["trial_mean"].where(several, table["conflict_fraction"])
    low = table["trial_low"].where(several, table["conflict_low"])
    high = table["trial_high"].where(several, table["conflict_high"])
    basis = np.where(several, "mean of " + table["trials_n"].astype(str) + " trials, t-interval across them",
                     "1 trial, interval over its " + table["steps"].astype(str) + " steps")
    table = table.assign(value=value, low=low, high=high, basis=basis)
    fig = go.Figure()
    for algo, grp in table.groupby("algo", sort=True):
        fig.add_trace(
            go.Bar(x=grp["variant"], y=grp["value"], name=algo, error_y=error_bars(grp["value"], grp["low"], grp["high"]),
                   customdata=np.stack([grp["low"], grp["high"], grp["basis"]], axis=1),
                   hovertemplate="%{x}, " + algo + "<br>conflict %{y:.3f} [%{customdata[0]:.3f}, "
                   "%{customdata[1]:.3f}]<br>%{customdata[2]}<extra></extra>")
        )
    fig.update_layout(title=title, barmode="group", xaxis_title="rule",
                      yaxis_title="conflict fraction", legend_title="RawBoost")
    return fig


def fig_cosine_histogram(hist: pd.DataFrame, colors: dict[str, str], *, title: str) -> go.Figure:
    if hist.empty:
        return empty_figure(title, "no step telemetry")
    fig = go.Figure()
    for group, grp in hist.groupby("group", sort=True):
        fig.add_trace(
            go.Bar(x=(grp["lo"] + grp["hi"]) / 2, y=grp["fraction"], width=(grp["hi"] - grp["lo"]).to_numpy(),
                   name=str(group), opacity=0.6, marker={"color": colors.get(str(group))},
                   customdata=grp[["count"]],
                   hovertemplate=f"{group}<br>cos %{{x:.3f}}<br>%{{y:.3f}} of steps (%{{customdata[0]}})<extra></extra>")
        )
    fig.add_vline(x=0, line_dash="dash", line_color="#444")
    fig.update_layout(title=title, barmode="overlay", xaxis_title="cosine",
                      yaxis_title="fraction of steps", xaxis_range=[-1, 1], legend_title="rule")
    return fig
