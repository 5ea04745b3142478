"""Figures over epochs: the conflict fraction and the dev EER, one line per trial."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpda_analysis.report.common import (STOPPED_DASH, STOPPED_SYMBOL, empty_figure, error_bars, integer_axis,
                                         trial_label)


def fig_conflict_by_epoch(by_epoch: pd.DataFrame, colors: dict[str, str], multi_run: bool,
                          stopped: set[tuple[str, str]], *, title: str) -> go.Figure:
    if by_epoch.empty:
        return empty_figure(title, "no step telemetry")
    fig = go.Figure()
    shown: set[str] = set()
    for (run_id, trial_id), grp in by_epoch.groupby(["run_id", "trial_id"], sort=True):
        rule = str(grp["variant"].iloc[0])  # the variant: a dual-path run's rule, else its augment mode
        early = (run_id, trial_id) in stopped
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["conflict_fraction"], mode="lines+markers",
                name=f"{rule}", legendgroup=rule, showlegend=rule not in shown,
                line={"color": colors.get(rule), "dash": STOPPED_DASH if early else "solid"},
                marker={"symbol": STOPPED_SYMBOL if early else "circle"},
                error_y=error_bars(grp["conflict_fraction"], grp["conflict_low"], grp["conflict_high"]),
                customdata=np.stack([grp["conflict_low"], grp["conflict_high"], grp["steps"]], axis=1),
                hovertemplate=f"trial {trial_label(run_id, trial_id, multi_run)} ({rule}"
                f"{', stopped early' if early else ''})<br>epoch %{{x}}<br>conflict %{{y:.3f}} "
                "[%{customdata[0]:.3f}, %{customdata[1]:.3f}] over %{customdata[2]} steps<extra></extra>",
            )
        )
        shown.add(rule)
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="conflict fraction",
                      legend_title="rule (dotted: stopped early)")
    integer_axis(fig, by_epoch["epoch"])
    return fig


def fig_dev_eer_by_epoch(metrics: pd.DataFrame, rules: dict, colors: dict[str, str], multi_run: bool,
                         stopped: set[tuple[str, str]], *, title: str) -> go.Figure:
    scored = metrics.dropna(subset=["dev_eer"]) if "dev_eer" in metrics else metrics.iloc[0:0]
    if scored.empty:
        return empty_figure(title, "no dev EER recorded (epochs table or Tune result.json)")
    fig = go.Figure()
    shown: set[str] = set()
    for (run_id, trial_id), grp in scored.groupby(["run_id", "trial_id"], sort=True):
        rule = str(rules.get((run_id, trial_id), "?"))
        early = (run_id, trial_id) in stopped
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["dev_eer"] * 100, mode="lines+markers", name=rule,
                legendgroup=rule, showlegend=rule not in shown,
                line={"color": colors.get(rule), "dash": STOPPED_DASH if early else "solid"},
                marker={"symbol": STOPPED_SYMBOL if early else "circle", "size": 9 if early else 6},
                hovertemplate=f"trial {trial_label(run_id, trial_id, multi_run)} ({rule}"
                f"{', stopped early' if early else ''})<br>epoch %{{x}}<br>dev EER %{{y:.2f}}%<extra></extra>",
            )
        )
        shown.add(rule)
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="dev EER (%)",
                      legend_title="rule (x, dotted: stopped early)")
    integer_axis(fig, scored["epoch"])
    return fig
