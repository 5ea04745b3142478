"""Figures with one point or line per trial: dev EER against conflict, and the search's parameters."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dpda_analysis.evaluation import STOPPED
from dpda_analysis.report.common import STOPPED_SYMBOL, empty_figure, error_bars, rho_text, trial_label
from dpda_analysis.report.inputs import ReportInputs


def fig_eer_vs_conflict(points: pd.DataFrame, inputs: ReportInputs, *, title: str) -> go.Figure:
    """One point per trial in its colour (x: stopped early), in both panels; Spearman in the panel titles."""
    if points.empty:
        return empty_figure(title, "needs trials with both step telemetry and a dev EER")
    corr = points.attrs.get("spearman", {})
    over = points.attrs.get("spearman_over", "all trials")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"best dev EER: {rho_text(corr.get('best_dev_eer', {}))}",
        f"epochs to best: {rho_text(corr.get('epochs_to_best', {}))}"))
    for (run_id, trial_id), grp in points.groupby(["run_id", "trial_id"], sort=True):
        early = bool((grp["status"] == STOPPED).any())
        text = [trial_label(r, t, inputs.multi_run) for r, t in zip(grp["run_id"], grp["trial_id"])]
        name = inputs.label(run_id, trial_id) + (", stopped early" if early else "")
        for col, y, fmt in ((1, grp["best_dev_eer"] * 100, ":.2f}%"), (2, grp["epochs_to_best"], "}")):
            fig.add_trace(
                go.Scatter(x=grp["conflict_fraction"], y=y, mode="markers", name=name, text=text,
                           legendgroup=name, showlegend=col == 1,
                           error_x=error_bars(grp["conflict_fraction"], grp["conflict_low"], grp["conflict_high"]),
                           marker={"color": inputs.color(run_id, trial_id), "size": 11 if early else 9,
                                   "symbol": STOPPED_SYMBOL if early else "circle"},
                           customdata=grp[["epochs"]].to_numpy(),
                           hovertemplate="trial %{text}" + (" (stopped early)" if early else "")
                           + "<br>conflict %{x:.3f}<br>%{y" + fmt + "<br>%{customdata[0]} epochs<extra></extra>"),
                row=1, col=col,
            )
    fig.update_xaxes(title_text="conflict fraction (95% interval over steps)")
    fig.update_yaxes(title_text="best dev EER (%)", row=1, col=1)
    fig.update_yaxes(title_text="epochs", row=1, col=2)
    fig.update_layout(title={"text": f"{title}<br><sup>Spearman over {over}; "
                             "x: stopped early (ASHA), not comparable with finished trials</sup>"},
                      legend_title="trial", margin={"t": 110})
    return fig


def _nice(value: float) -> float:
    return float(f"{value:.2g}")


def _numeric_dimension(label: str, values: np.ndarray, log: bool) -> dict:
    """A parcoords axis with a few rounded ticks; log-scaled parameters get log10 positions and
    ticks at 1, 2, 5 x 10^k."""
    lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
    if log and lo > 0:
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                 for m in (1, 2, 5)]
        ticks = [t for t in ticks if lo <= t <= hi] or [_nice(lo), _nice(hi)]
        if len(ticks) > 6:
            ticks = [t for t in ticks if f"{t:.0e}".startswith("1")] or ticks[::2]
        return {"label": f"{label} (log)", "values": np.log10(values), "range": [math.log10(lo), math.log10(hi)],
                "tickvals": [math.log10(t) for t in ticks], "ticktext": [f"{t:.0e}".replace("e-0", "e-") for t in ticks]}
    if hi == lo:
        return {"label": label, "values": values, "tickvals": [lo], "ticktext": [f"{lo:.3g}"]}
    ticks = sorted({_nice(t) for t in np.linspace(lo, hi, 5)})
    ticks = [t for t in ticks if lo <= t <= hi] or [lo, hi]
    return {"label": label, "values": values, "range": [lo, hi], "tickvals": ticks,
            "ticktext": [f"{t:.3g}" for t in ticks]}


def fig_search_parcoords(table: pd.DataFrame, space: dict[str, dict] | None = None, *, title: str) -> go.Figure:
    """One axis per searched parameter (its config key; `space` from the experiment's search-space
    snapshot gives the keys and which are log-scaled; without it every `param.` column except
    internal `key:suffix` ones, log-scaled when positive over more than two decades), then the
    conflict fraction and the dev EER (saved model's when any trial has one, else best epoch's)."""
    eer_col = "model_dev_eer" if "model_dev_eer" in table and table["model_dev_eer"].notna().any() else "best_dev_eer"
    data = table.dropna(subset=[eer_col]) if eer_col in table else table.iloc[0:0]
    if data.empty:
        return empty_figure(title, "no trial has a dev EER")
    params = [c for c in table.columns if c.startswith("param.") and ":" not in c]
    if space is not None:
        params = [c for c in params if c[len("param."):] in space]
    dims = []
    for col in params:
        values = data[col]
        key = col[len("param."):]
        numeric = pd.to_numeric(values, errors="coerce")
        spec = (space or {}).get(key, {})
        if spec.get("kind") != "choice" and numeric.notna().all() and not values.map(
                lambda v: isinstance(v, (bool, np.bool_))).any():
            arr = numeric.to_numpy(float)
            if space is not None:
                log = spec.get("kind") == "loguniform" or bool(spec.get("log"))
            else:
                log = bool(arr.min() > 0 and arr.max() / arr.min() > 100)
            dims.append(_numeric_dimension(key, arr, log))
        else:
            # conditional parameters are missing in trials where they do not apply
            labels = values.map(lambda v: "n/a" if pd.isna(v) else str(v))
            cats = sorted(labels.unique())
            codes = labels.map({c: i for i, c in enumerate(cats)})
            dims.append({"label": key, "values": codes.to_numpy(float), "tickvals": list(range(len(cats))),
                         "ticktext": cats, "range": [-0.3, len(cats) - 0.7] if len(cats) > 1 else [-1, 1]})
    if "conflict_fraction" in data and data["conflict_fraction"].notna().all():
        dims.append(_numeric_dimension("conflict fraction", data["conflict_fraction"].to_numpy(float), False))
    eer = data[eer_col].to_numpy(float) * 100
    dims.append(_numeric_dimension("model dev EER %" if eer_col == "model_dev_eer" else "best epoch dev EER %",
                                   eer, False))
    fig = go.Figure(
        go.Parcoords(dimensions=dims, labelangle=-18, labelside="top", labelfont={"size": 11},
                     tickfont={"size": 10}, rangefont={"size": 1, "color": "rgba(0,0,0,0)"},
                     line={"color": eer, "colorscale": "Viridis_r", "showscale": True,
                           "colorbar": {"title": {"text": "dev EER %"}}})
    )
    fig.update_layout(title=title, height=520, margin={"l": 90, "r": 90, "t": 150})
    return fig
