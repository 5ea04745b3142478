"""Figures comparing alignment rules: conflict per (rule, RawBoost algorithm), per transform of the
augmentation pipeline, cosine histograms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dpda_analysis.report.common import STOPPED_SYMBOL, empty_figure, error_bars
from dpda_analysis.report.inputs import ReportInputs


def _algo(value: object) -> str:
    return "no RawBoost" if pd.isna(value) else f"algo {int(value)}"


def fig_conflict_by_rule_algo(pooled: pd.DataFrame, per_trial: pd.DataFrame, inputs: ReportInputs, *,
                              title: str) -> go.Figure:
    """One bar per (rule, RawBoost algorithm): the fraction of the group's pooled steps that conflict,
    with its Wilson 95% interval over steps (the one kind of interval here); one point per trial on
    it, in the trial's colour, without an interval. No interval across trials: the trials of a
    search are not seeds of one setting (a t-interval over two of them has one degree of freedom)."""
    if pooled.empty:
        return empty_figure(title, "no step telemetry")
    pooled = pooled.assign(x=pooled["variant"].astype(str) + "<br>" + pooled["rawboost_algo"].map(_algo))
    fig = go.Figure(go.Bar(
        x=pooled["x"], y=pooled["conflict_fraction"], name="pooled steps (Wilson 95%)",
        marker={"color": [inputs.colors.get(str(v), "#999") for v in pooled["variant"]], "opacity": 0.45},
        error_y=error_bars(pooled["conflict_fraction"], pooled["conflict_low"], pooled["conflict_high"]),
        customdata=np.stack([pooled["conflict_low"], pooled["conflict_high"], pooled["steps"], pooled["trials"]], axis=1),
        hovertemplate="%{x}<br>pooled conflict %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}] over "
        "%{customdata[2]} steps of %{customdata[3]} trial(s)<extra></extra>"))
    for (run_id, trial_id), row in per_trial.set_index(["run_id", "trial_id"]).iterrows():
        name = inputs.label(run_id, trial_id) + (", stopped early" if (run_id, trial_id) in inputs.stopped else "")
        fig.add_trace(go.Scatter(
            x=[f"{row['variant']}<br>{_algo(row['rawboost_algo'])}"], y=[row["conflict_fraction"]], mode="markers",
            name=name, marker={"color": inputs.color(run_id, trial_id), "size": 10, "line": {"width": 1, "color": "#fff"},
                               "symbol": STOPPED_SYMBOL if (run_id, trial_id) in inputs.stopped else "circle"},
            customdata=[[int(row["steps"])]],
            hovertemplate=f"{name}<br>conflict %{{y:.3f}} over %{{customdata[0]}} steps<extra></extra>"))
    fig.update_layout(title={"text": f"{title}<br><sup>bars: pooled steps of the group, Wilson 95% interval over "
                             "steps; points: each trial (no interval across trials: a search's trials are not "
                             "seeds)</sup>"}, xaxis_title="rule, RawBoost algorithm", yaxis_title="conflict fraction",
                      legend_title="trial", margin={"t": 100})
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
