"""Figures of many-path runs: the conflict matrix between paths per span of epochs, and the pairs
that conflict most (`dpda_analysis.pathmatrix`). The report draws them when some trial has three
paths or more (`figures.FIGURES`); a dual-path run's matrix is its one whole-model fraction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dpda_analysis.pathmatrix import pair_matrix
from dpda_analysis.report.common import empty_figure, error_bars, trial_label

MAX_PAIRS = 15  # the ranked chart's pairs, most conflicting (pooled over trials) first


def _trial_order(pairs: pd.DataFrame) -> list[tuple[str, str]]:
    """Trials with a matrix, the most paths first (the one shown first), then by id."""
    size = pairs.groupby(["run_id", "trial_id"])["n_paths"].max().reset_index()
    size = size.sort_values(["n_paths", "run_id", "trial_id"], ascending=[False, True, True])
    return list(zip(size["run_id"], size["trial_id"]))


def fig_path_matrix(pairs: pd.DataFrame, multi_run: bool, *, title: str) -> go.Figure:
    """One heatmap per span of epochs (`pair_conflicts(per='range')` rows: thirds of each run) of
    the pairs' conflict fraction, cells annotated, the Wilson interval, steps and mean cosine in
    the hover; a dropdown picks the trial (the one with the most paths first)."""
    if pairs.empty:
        return empty_figure(title, "no many-path telemetry (runs with an augmented path)")
    trials = _trial_order(pairs)
    spans = {t: sorted(set(zip(g["epoch_lo"], g["epoch_hi"])))
             for t, g in pairs.groupby(["run_id", "trial_id"], sort=False)}
    cols = max(len(s) for s in spans.values())
    fig = make_subplots(rows=1, cols=cols, horizontal_spacing=0.08)
    owner, axis_titles = [], {}
    for n, trial in enumerate(trials):
        rows = pairs[(pairs["run_id"] == trial[0]) & (pairs["trial_id"] == trial[1])]
        titles = {}
        for col, (lo, hi) in enumerate(spans[trial], start=1):
            span = rows[(rows["epoch_lo"] == lo) & (rows["epoch_hi"] == hi)]
            frac = pair_matrix(span)
            extra = np.stack([pair_matrix(span, v).to_numpy() for v in ("lo", "hi", "n", "mean_cos")], axis=-1)
            names = list(frac.columns)
            fig.add_trace(go.Heatmap(
                z=frac.to_numpy(), x=names, y=names, zmin=0, zmax=1, colorscale="Reds", visible=n == 0,
                customdata=extra, texttemplate="%{z:.2f}", showscale=col == len(spans[trial]),
                colorbar={"title": {"text": "conflict"}},
                name=f"{trial_label(*trial, multi_run)} epochs {lo}-{hi}",
                hovertemplate="%{y} vs %{x}<br>conflict %{z:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                              "<br>over %{customdata[2]} steps, mean cos %{customdata[3]:.3f}<extra></extra>"),
                row=1, col=col)
            owner.append(n)
            titles[f"xaxis{'' if col == 1 else col}.title.text"] = f"epochs {lo}-{hi}"
        for col in range(len(spans[trial]) + 1, cols + 1):
            titles[f"xaxis{col}.title.text"] = ""
        axis_titles[trial] = titles
    fig.update_yaxes(autorange="reversed")
    for key, text in axis_titles[trials[0]].items():
        fig.layout[key.split(".")[0]].title.text = text
    fig.update_layout(title=title, height=420)
    if len(trials) > 1:
        buttons = [{"label": trial_label(*t, multi_run), "method": "update",
                    "args": [{"visible": [o == n for o in owner]}, axis_titles[t]]} for n, t in enumerate(trials)]
        fig.update_layout(updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.18,
                                        "yanchor": "top", "showactive": True}])
    return fig


def fig_path_pairs_ranked(ranked: pd.DataFrame, multi_run: bool, *, title: str) -> go.Figure:
    """Horizontal bars: each pair's conflict fraction per trial (`most_conflicting_pairs` rows, whole
    run) with its Wilson interval; pairs ordered by their fraction pooled over the trials, most
    conflicting at the top, up to MAX_PAIRS."""
    if ranked.empty:
        return empty_figure(title, "no many-path telemetry (runs with an augmented path)")
    ranked = ranked.assign(pair=ranked["path_i"] + " / " + ranked["path_j"])
    pooled = ranked.groupby("pair")[["conflicts", "n"]].sum()
    order = (pooled["conflicts"] / pooled["n"].where(pooled["n"] > 0)).sort_values(ascending=False).index[:MAX_PAIRS]
    shown = ranked[ranked["pair"].isin(order)]
    fig = go.Figure()
    for trial in _trial_order(ranked):
        grp = shown[(shown["run_id"] == trial[0]) & (shown["trial_id"] == trial[1])]
        if grp.empty:
            continue
        label = trial_label(*trial, multi_run)
        fig.add_trace(go.Bar(
            y=grp["pair"], x=grp["fraction"], orientation="h", name=label,
            error_x=error_bars(grp["fraction"], grp["lo"], grp["hi"]),
            customdata=np.stack([grp["lo"], grp["hi"], grp["n"], grp["mean_cos"], grp["rank"]], axis=1),
            hovertemplate=f"{label}, " + "%{y}<br>conflict %{x:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}] "
                          "over %{customdata[2]} steps<br>mean cos %{customdata[3]:.3f}; rank %{customdata[4]} "
                          "in its trial<extra></extra>"))
    fig.update_layout(title=title, barmode="group", xaxis_title="conflict fraction (cos < 0)", legend_title="trial",
                      height=max(350, 28 * len(order) * max(1, min(len(fig.data), 4)) // 2 + 150))
    fig.update_yaxes(categoryorder="array", categoryarray=list(order)[::-1])
    return fig
