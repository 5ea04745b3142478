"""Figures over epochs: the conflict fraction and the dev EER, one line per trial."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpda_analysis.report.common import STOPPED_DASH, STOPPED_SYMBOL, empty_figure, error_bars, integer_axis
from dpda_analysis.report.inputs import ReportInputs


def _name(inputs: ReportInputs, run_id: str, trial_id: str) -> str:
    """A trial's legend entry: its label, and whether it was stopped early."""
    early = (run_id, trial_id) in inputs.stopped
    return inputs.label(run_id, trial_id) + (", stopped early" if early else "")


def fig_conflict_by_epoch(by_epoch: pd.DataFrame, inputs: ReportInputs, *, title: str) -> go.Figure:
    """One line per trial, in its colour (the same in every figure), dotted when stopped early."""
    if by_epoch.empty:
        return empty_figure(title, "no step telemetry")
    fig = go.Figure()
    for (run_id, trial_id), grp in by_epoch.groupby(["run_id", "trial_id"], sort=True):
        early = (run_id, trial_id) in inputs.stopped
        name = _name(inputs, run_id, trial_id)
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["conflict_fraction"], mode="lines+markers", name=name,
                line={"color": inputs.color(run_id, trial_id), "dash": STOPPED_DASH if early else "solid"},
                marker={"symbol": STOPPED_SYMBOL if early else "circle"},
                error_y=error_bars(grp["conflict_fraction"], grp["conflict_low"], grp["conflict_high"]),
                customdata=np.stack([grp["conflict_low"], grp["conflict_high"], grp["steps"]], axis=1),
                hovertemplate=f"{name}<br>epoch %{{x}}<br>conflict %{{y:.3f}} "
                "[%{customdata[0]:.3f}, %{customdata[1]:.3f}] over %{customdata[2]} steps<extra></extra>",
            )
        )
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="conflict fraction",
                      legend_title="trial (dotted: stopped early)")
    integer_axis(fig, by_epoch["epoch"])
    return fig


def fig_dev_eer_by_epoch(metrics: pd.DataFrame, inputs: ReportInputs, *, title: str) -> go.Figure:
    """One line per trial, in its colour, dotted with x markers when stopped early."""
    scored = metrics.dropna(subset=["dev_eer"]) if "dev_eer" in metrics else metrics.iloc[0:0]
    if scored.empty:
        return empty_figure(title, "no dev EER recorded (epochs table or Tune result.json)")
    fig = go.Figure()
    for (run_id, trial_id), grp in scored.groupby(["run_id", "trial_id"], sort=True):
        early = (run_id, trial_id) in inputs.stopped
        name = _name(inputs, run_id, trial_id)
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["dev_eer"] * 100, mode="lines+markers", name=name,
                line={"color": inputs.color(run_id, trial_id), "dash": STOPPED_DASH if early else "solid"},
                marker={"symbol": STOPPED_SYMBOL if early else "circle", "size": 9 if early else 6},
                hovertemplate=f"{name}<br>epoch %{{x}}<br>dev EER %{{y:.2f}}%<extra></extra>",
            )
        )
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="dev EER (%)",
                      legend_title="trial (x, dotted: stopped early)")
    integer_axis(fig, scored["epoch"])
    return fig
