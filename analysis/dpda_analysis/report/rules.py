"""Figures comparing alignment rules: conflict per (rule, RawBoost algorithm), per transform of the
augmentation pipeline, cosine histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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


MAX_COMBINATIONS = 12  # per variant, the combinations most utterances received; the rest are in the query


def fig_conflict_by_transform(per_transform: pd.DataFrame, per_combination: pd.DataFrame, colors: dict[str, str],
                              *, title: str) -> go.Figure:
    """Left: the conflict fraction per transform of the augmentation pipeline (the steps where some
    utterance received it), right: per combination of transforms, one bar colour per variant,
    with the Wilson interval over steps; the utterance-weighted fraction in the hover. Only
    dual-path runs that recorded the applied transforms (telemetry schema 4) have bars."""
    if per_transform.empty:
        return empty_figure(title, "no applied-transforms telemetry (dual-path runs of schema 4 or later)")
    top = (per_combination.sort_values(["variant", "received_utterances"], ascending=[True, False])
           .groupby("variant", sort=False).head(MAX_COMBINATIONS))
    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.08,
                        subplot_titles=("per transform", f"per combination (up to {MAX_COMBINATIONS} per variant)"))
    for col, (table, x) in enumerate(((per_transform, "leaf"), (top, "combination")), start=1):
        for variant, grp in table.groupby("variant", sort=True):
            fig.add_trace(
                go.Bar(x=grp[x], y=grp["conflict_fraction"], name=str(variant), legendgroup=str(variant),
                       showlegend=col == 1, marker={"color": colors.get(str(variant))},
                       error_y=error_bars(grp["conflict_fraction"], grp["conflict_low"], grp["conflict_high"]),
                       customdata=np.stack([grp["conflict_low"], grp["conflict_high"], grp["steps"],
                                            grp["weighted_conflict_fraction"], grp["received_utterances"]], axis=1),
                       hovertemplate=f"{variant}, " + "%{x}<br>conflict %{y:.3f} [%{customdata[0]:.3f}, "
                       "%{customdata[1]:.3f}] over %{customdata[2]} steps<br>utterance-weighted %{customdata[3]:.3f} "
                       "(%{customdata[4]} utterances)<extra></extra>"),
                row=1, col=col)
    fig.update_yaxes(title_text="conflict fraction", row=1, col=1)
    fig.update_layout(title=title, barmode="group", legend_title="variant")
    return fig
