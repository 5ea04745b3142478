"""The interactive conflict-analysis report: one self-contained, offline HTML file.

plotly.js is embedded inline once (no CDN, no network at view time), each figure is a div.
A tiny script at the top records JavaScript errors into `#js-errors` and a script at the end
records, per figure, whether Plotly drew it (`#render-status`), so a headless browser test can
check the page without a JS console.
"""

from __future__ import annotations

import html
import importlib.util
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.offline
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from dpda_analysis import queries as Q
from dpda_analysis.errors import AnalysisError
from dpda_analysis.evaluation import COMPLETED, STOPPED, fig_evaluation, read_evaluation, read_search_space, read_test_eers
from dpda_analysis.store import Telemetry

FIGURE_ORDER = (
    "conflict_by_epoch",
    "dev_eer_by_epoch",
    "conflict_by_rule_algo",
    "layer_heatmap",
    "layer_conflict",
    "cosine_histogram",
    "eer_vs_conflict",
    "search_parcoords",
    "test_eer",
    "test_eer_by_attack",
)
TRIALS_TABLE = "trials_table"  # an HTML table (sortable, never truncated), after the figures
EVALUATION_FIGURE = "evaluation"  # added after FIGURE_ORDER when an eval folder is given

_TITLES = {
    "conflict_by_epoch": "Conflict fraction per epoch (whole-model cos(g_orig, g_aug) < 0), 95% interval over steps",
    "dev_eer_by_epoch": "Dev EER per epoch",
    "conflict_by_rule_algo": "Conflict fraction by alignment rule and RawBoost algorithm, with 95% intervals",
    "layer_heatmap": "Per-layer mean cosine over training (parameter tensors x step bins, grouped by module)",
    "layer_conflict": "Per-layer conflict fraction per rule, by module",
    "cosine_histogram": "Distribution of cos(g_orig, g_aug) per rule",
    "eer_vs_conflict": "Best dev EER and epochs-to-best against conflict fraction (one point per trial)",
    "search_parcoords": "Search: searched parameters against dev EER",
    "test_eer": "Test-set EER of every evaluated model, with 95% bootstrap intervals",
    "test_eer_by_attack": "Test-set EER per attack, with 95% bootstrap intervals",
    TRIALS_TABLE: "Trials (click a column to sort)",
}
_STOPPED_DASH = "dot"  # early-stopped trials' lines
_STOPPED_SYMBOL = "x-open"  # and markers

_HEAD_SCRIPT = """<script>
window.__dpdaErrors = [];
function __dpdaShow() {
  var el = document.getElementById('js-errors');
  if (el) { el.textContent = window.__dpdaErrors.join('\\n'); el.dataset.count = window.__dpdaErrors.length; }
}
function __dpdaRecord(msg) { window.__dpdaErrors.push(String(msg)); __dpdaShow(); }
window.addEventListener('error', function (e) { __dpdaRecord('error: ' + (e.message || e.type)); });
window.addEventListener('unhandledrejection', function (e) { __dpdaRecord('rejection: ' + e.reason); });
(function () {  // console warnings and errors count too (Plotly reports bad input there)
  ['warn', 'error'].forEach(function (level) {
    var orig = console[level];
    console[level] = function () {
      __dpdaRecord(level + ': ' + Array.prototype.join.call(arguments, ' '));
      return orig.apply(console, arguments);
    };
  });
})();
document.addEventListener('DOMContentLoaded', __dpdaShow);  // errors raised before the <pre> existed
</script>"""

_TAIL_SCRIPT = """<script>
(function () {
  function check() {
    var status = {};
    document.querySelectorAll('.dpda-figure .plotly-graph-div').forEach(function (div) {
      status[div.id] = div.querySelector('svg.main-svg') !== null;
    });
    var el = document.getElementById('render-status');
    el.textContent = JSON.stringify(status);
    el.dataset.rendered = Object.values(status).filter(function (v) { return v; }).length;
    el.dataset.total = Object.keys(status).length;
  }
  window.addEventListener('load', function () { setTimeout(check, 0); });
})();
(function () {  // sortable tables: click a header; numbers sort as numbers, blanks last
  document.querySelectorAll('table.sortable').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, col) {
      th.addEventListener('click', function () {
        var asc = th.dataset.dir !== 'asc';
        table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
        th.dataset.dir = asc ? 'asc' : 'desc';
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
          if (x === '' || y === '') { return (x === '') - (y === ''); }
          var nx = Number(x), ny = Number(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
</script>"""

_CSS = """<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table.summary td, table.summary th { padding: 2px 12px; text-align: left; border-bottom: 1px solid #ddd; }
#js-errors { color: #b00; white-space: pre-wrap; } #js-errors:empty { display: none; }
#render-status { display: none; } .note { color: #666; font-size: 0.9rem; }
.table-wrap { overflow-x: auto; max-height: 700px; overflow-y: auto; }
table.sortable { border-collapse: collapse; font-size: 0.85rem; }
table.sortable th { position: sticky; top: 0; background: #f3f3f3; cursor: pointer; white-space: nowrap;
  padding: 4px 8px; text-align: left; border-bottom: 2px solid #bbb; }
table.sortable th[data-dir=asc]::after { content: " \\25B2"; } table.sortable th[data-dir=desc]::after { content: " \\25BC"; }
table.sortable td { padding: 3px 8px; border-bottom: 1px solid #e4e4e4; white-space: nowrap; }
table.sortable tr.stopped td { color: #777; }
</style>"""


@dataclass
class ReportResult:
    html_path: Path
    figures: list[str]
    png_paths: list[Path] = field(default_factory=list)
    png_message: str | None = None  # why PNGs were not written, if they were requested


def _rule_colors(rules: list[str]) -> dict[str, str]:
    palette = qualitative.Plotly
    return {r: palette[i % len(palette)] for i, r in enumerate(sorted(rules))}


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=250)
    return fig


def _trial_label(run_id: str, trial_id: str, multi_run: bool) -> str:
    return f"{run_id}/{trial_id}" if multi_run else str(trial_id)


def _pct(v: object, digits: int = 2) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{float(v) * 100:.{digits}f}%"


def _interval(low: object, high: object) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" [{float(low) * 100:.1f}, {float(high) * 100:.1f}]%"


def _errors(values: pd.Series, low: pd.Series, high: pd.Series, scale: float = 1.0) -> dict:
    """Plotly asymmetric error bars from interval bounds (no bar where a bound is NaN)."""
    return {"type": "data", "symmetric": False, "array": ((high - values) * scale).fillna(0).to_numpy(float),
            "arrayminus": ((values - low) * scale).fillna(0).to_numpy(float), "thickness": 1.2, "width": 3}


def _integer_axis(fig: go.Figure, values: pd.Series, **where: int) -> None:
    """Whole-number ticks (epochs), one per value while there are few."""
    span = (values.max() - values.min()) if len(values) else 0
    fig.update_xaxes(tickformat="d", dtick=1 if span <= 20 else None, **where)


def fig_conflict_by_epoch(by_epoch: pd.DataFrame, colors: dict[str, str], multi_run: bool,
                          stopped: set[tuple[str, str]]) -> go.Figure:
    if by_epoch.empty:
        return _empty(_TITLES["conflict_by_epoch"], "no step telemetry")
    fig = go.Figure()
    shown: set[str] = set()
    for (run_id, trial_id), grp in by_epoch.groupby(["run_id", "trial_id"], sort=True):
        rule = str(grp["rule"].iloc[0])
        early = (run_id, trial_id) in stopped
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["conflict_fraction"], mode="lines+markers",
                name=f"{rule}", legendgroup=rule, showlegend=rule not in shown,
                line={"color": colors.get(rule), "dash": _STOPPED_DASH if early else "solid"},
                marker={"symbol": _STOPPED_SYMBOL if early else "circle"},
                error_y=_errors(grp["conflict_fraction"], grp["conflict_low"], grp["conflict_high"]),
                customdata=np.stack([grp["conflict_low"], grp["conflict_high"], grp["steps"]], axis=1),
                hovertemplate=f"trial {_trial_label(run_id, trial_id, multi_run)} ({rule}"
                f"{', stopped early' if early else ''})<br>epoch %{{x}}<br>conflict %{{y:.3f}} "
                "[%{customdata[0]:.3f}, %{customdata[1]:.3f}] over %{customdata[2]} steps<extra></extra>",
            )
        )
        shown.add(rule)
    fig.update_layout(title=_TITLES["conflict_by_epoch"], xaxis_title="epoch", yaxis_title="conflict fraction",
                      legend_title="rule (dotted: stopped early)")
    _integer_axis(fig, by_epoch["epoch"])
    return fig


def fig_dev_eer_by_epoch(metrics: pd.DataFrame, rules: dict, colors: dict[str, str], multi_run: bool,
                         stopped: set[tuple[str, str]]) -> go.Figure:
    scored = metrics.dropna(subset=["dev_eer"]) if "dev_eer" in metrics else metrics.iloc[0:0]
    if scored.empty:
        return _empty(_TITLES["dev_eer_by_epoch"], "no dev EER recorded (epochs table or Tune result.json)")
    fig = go.Figure()
    shown: set[str] = set()
    for (run_id, trial_id), grp in scored.groupby(["run_id", "trial_id"], sort=True):
        rule = str(rules.get((run_id, trial_id), "?"))
        early = (run_id, trial_id) in stopped
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["dev_eer"] * 100, mode="lines+markers", name=rule,
                legendgroup=rule, showlegend=rule not in shown,
                line={"color": colors.get(rule), "dash": _STOPPED_DASH if early else "solid"},
                marker={"symbol": _STOPPED_SYMBOL if early else "circle", "size": 9 if early else 6},
                hovertemplate=f"trial {_trial_label(run_id, trial_id, multi_run)} ({rule}"
                f"{', stopped early' if early else ''})<br>epoch %{{x}}<br>dev EER %{{y:.2f}}%<extra></extra>",
            )
        )
        shown.add(rule)
    fig.update_layout(title=_TITLES["dev_eer_by_epoch"], xaxis_title="epoch", yaxis_title="dev EER (%)",
                      legend_title="rule (x, dotted: stopped early)")
    _integer_axis(fig, scored["epoch"])
    return fig


def fig_conflict_by_rule_algo(table: pd.DataFrame) -> go.Figure:
    """One bar per (rule, algorithm): with several trials (seeds) their mean and a t-interval
    across them; with one, its fraction and the (narrower, steps are correlated) interval over steps."""
    if table.empty:
        return _empty(_TITLES["conflict_by_rule_algo"], "no step telemetry")
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
            go.Bar(x=grp["rule"], y=grp["value"], name=algo, error_y=_errors(grp["value"], grp["low"], grp["high"]),
                   customdata=np.stack([grp["low"], grp["high"], grp["basis"]], axis=1),
                   hovertemplate="%{x}, " + algo + "<br>conflict %{y:.3f} [%{customdata[0]:.3f}, "
                   "%{customdata[1]:.3f}]<br>%{customdata[2]}<extra></extra>")
        )
    fig.update_layout(title=_TITLES["conflict_by_rule_algo"], barmode="group", xaxis_title="rule",
                      yaxis_title="conflict fraction", legend_title="RawBoost")
    return fig


def _module_ticks(names: list[str]) -> tuple[list[float], list[str], list[int]]:
    """(tick positions, labels, boundaries) for tensors in parameter order: a boundary where the
    module changes, and a label at the middle of each module where there is room (~60 on the axis).

    Runs of small numbered siblings (7 convolutions of one tensor each) share one label
    (`...conv_layers.0-6`); then labels are placed largest module first, skipping any closer
    than 1/60 of the axis to one already placed."""
    modules = [Q.module_of(n) for n in names]
    starts = [i for i, m in enumerate(modules) if i == 0 or m != modules[i - 1]]
    sizes = [b - a for a, b in zip(starts, starts[1:] + [len(names)])]
    gap = len(names) / 60
    groups: list[list] = []  # [start, size, parent, first index, last index]
    for start, size in zip(starts, sizes):
        parent, _, index = modules[start].rpartition(".")
        last = groups[-1] if groups else None
        if (last is not None and index.isdigit() and last[2] == parent and last[1] < gap and size < gap
                and last[4] is not None):
            last[1] += size
            last[4] = index
        else:
            groups.append([start, size, parent, index if index.isdigit() else None,
                           index if index.isdigit() else None])
    labelled: list[tuple[float, str]] = []
    for start, size, parent, first, last in sorted(groups, key=lambda g: (-g[1], g[0])):
        centre = start + (size - 1) / 2
        if all(abs(centre - c) >= gap for c, _ in labelled):
            name = f"{parent}.{first}-{last}" if first is not None and first != last else modules[start]
            labelled.append((centre, f"{name} ({start})"))
    labelled.sort()
    return [s for s, _ in labelled], [t for _, t in labelled], starts[1:]


def fig_layer_heatmap(tel: Telemetry, order: list[tuple[str, str]], bins: int, max_trials: int,
                      multi_run: bool) -> go.Figure:
    names = Q.layer_names(tel)
    fig = go.Figure()
    labels, ticks = [], []
    for run_id, trial_id in order:
        if len(labels) >= max_trials:
            break
        cells = Q.layer_heatmap(tel, run_id, trial_id, bins=bins)
        if cells.empty:
            continue
        grid = cells.pivot(index="layer", columns="bin", values="mean_cos").sort_index()
        spans = cells.groupby("bin")[["step_lo", "step_hi"]].first().reindex(grid.columns)
        trial_names = names[(names["run_id"] == run_id) & (names["trial_id"] == trial_id)].set_index("layer")["name"]
        full = [str(trial_names.get(i, f"layer {i}")) for i in grid.index]
        x = ((spans["step_lo"] + spans["step_hi"]) / 2).to_numpy()
        label = _trial_label(run_id, trial_id, multi_run)
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(np.float32), x=x, y=grid.index.to_numpy(), zmin=-1, zmax=1, zmid=0,
                colorscale="RdBu", colorbar={"title": {"text": "mean cos"}}, visible=not labels, name=label,
                customdata=np.repeat(np.array(full, dtype=object)[:, None], len(x), axis=1),
                hovertemplate="%{customdata}<br>(tensor %{y})<br>step ~%{x:.0f}<br>mean cos %{z:.3f}<extra></extra>",
            )
        )
        labels.append(label)
        ticks.append(_module_ticks(full))
    if not labels:
        return _empty(_TITLES["layer_heatmap"], "no per-layer telemetry")
    tickvals, ticktext, bounds = ticks[0]
    n_layers = len(fig.data[0].y)
    buttons = [
        {"label": f"trial {lab}", "method": "update",
         "args": [{"visible": [j == i for j in range(len(labels))]},
                  {"title": {"text": f"{_TITLES['layer_heatmap']}: trial {lab}"},
                   "yaxis.tickvals": ticks[i][0], "yaxis.ticktext": ticks[i][1]}]}
        for i, lab in enumerate(labels)
    ]
    fig.update_layout(
        title=f"{_TITLES['layer_heatmap']}: trial {labels[0]}",
        xaxis_title="step (drag to zoom, double-click to reset)",
        yaxis={"title": "", "autorange": "reversed", "tickvals": tickvals, "ticktext": ticktext,
               "tickfont": {"size": 10}, "automargin": True},
        shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": b - 0.5, "y1": b - 0.5,
                 "line": {"color": "rgba(0,0,0,0.25)", "width": 0.6}} for b in bounds],
        height=int(min(1100, max(420, 10 * n_layers + 160)) if n_layers <= 90 else 1100),
        updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.08, "yanchor": "bottom"}]
        if len(labels) > 1 else [],
    )
    return fig


def fig_layer_conflict(modules: pd.DataFrame) -> go.Figure:
    """Modules (rows, in parameter order) x rules (columns): per-layer conflict pooled per rule."""
    if modules.empty:
        return _empty(_TITLES["layer_conflict"], "no per-layer telemetry")
    grid = modules.pivot(index="module", columns="rule", values="conflict_fraction")
    order = modules.groupby("module")["first_layer"].min().sort_values().index
    grid = grid.reindex(order)
    tensors = modules.groupby("module")["tensors"].max().reindex(order)
    rows = modules.pivot(index="module", columns="rule", values="rows").reindex(order)
    y = [f"{m} ({int(t)})" for m, t in zip(order, tensors)]
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(float), x=list(grid.columns), y=y, colorscale="Reds", zmin=0,
        colorbar={"title": {"text": "conflict"}}, customdata=rows.to_numpy(float),
        hovertemplate="%{y} tensors<br>rule %{x}<br>conflict %{z:.3f} over %{customdata:.0f} tensor-steps"
        "<extra></extra>"))
    fig.update_layout(title=_TITLES["layer_conflict"], xaxis_title="rule", xaxis_side="top",
                      yaxis={"autorange": "reversed", "title": "module (tensors)", "tickfont": {"size": 10},
                             "automargin": True},
                      height=int(min(1400, max(360, 16 * len(y) + 180))))
    return fig


def fig_cosine_histogram(hist: pd.DataFrame, colors: dict[str, str]) -> go.Figure:
    if hist.empty:
        return _empty(_TITLES["cosine_histogram"], "no step telemetry")
    fig = go.Figure()
    for group, grp in hist.groupby("group", sort=True):
        fig.add_trace(
            go.Bar(x=(grp["lo"] + grp["hi"]) / 2, y=grp["fraction"], width=(grp["hi"] - grp["lo"]).to_numpy(),
                   name=str(group), opacity=0.6, marker={"color": colors.get(str(group))},
                   customdata=grp[["count"]],
                   hovertemplate=f"{group}<br>cos %{{x:.3f}}<br>%{{y:.3f}} of steps (%{{customdata[0]}})<extra></extra>")
        )
    fig.add_vline(x=0, line_dash="dash", line_color="#444")
    fig.update_layout(title=_TITLES["cosine_histogram"], barmode="overlay", xaxis_title="cosine",
                      yaxis_title="fraction of steps", xaxis_range=[-1, 1], legend_title="rule")
    return fig


def _rho_text(corr: dict) -> str:
    if not corr or pd.isna(corr.get("rho")):
        return f"Spearman n/a (n={corr.get('n', 0)})"
    return f"Spearman rho {corr['rho']:+.2f}, p={corr['p']:.2g}, n={corr['n']}"


def fig_eer_vs_conflict(points: pd.DataFrame, colors: dict[str, str], multi_run: bool) -> go.Figure:
    if points.empty:
        return _empty(_TITLES["eer_vs_conflict"], "needs trials with both step telemetry and a dev EER")
    corr = points.attrs.get("spearman", {})
    over = points.attrs.get("spearman_over", "all trials")
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"best dev EER: {_rho_text(corr.get('best_dev_eer', {}))}",
        f"epochs to best: {_rho_text(corr.get('epochs_to_best', {}))}"))
    for (rule, status), grp in points.groupby(["rule", "status"], sort=True, dropna=False):
        early = status == STOPPED
        text = [_trial_label(r, t, multi_run) for r, t in zip(grp["run_id"], grp["trial_id"])]
        name = f"{rule}, stopped early" if early else str(rule)
        for col, y, fmt in ((1, grp["best_dev_eer"] * 100, ":.2f}%"), (2, grp["epochs_to_best"], "}")):
            fig.add_trace(
                go.Scatter(x=grp["conflict_fraction"], y=y, mode="markers", name=name, text=text,
                           legendgroup=name, showlegend=col == 1,
                           error_x=_errors(grp["conflict_fraction"], grp["conflict_low"], grp["conflict_high"]),
                           marker={"color": colors.get(str(rule)), "size": 11 if early else 9,
                                   "symbol": _STOPPED_SYMBOL if early else "circle"},
                           customdata=grp[["epochs"]].to_numpy(),
                           hovertemplate="trial %{text}" + (" (stopped early)" if early else "")
                           + "<br>conflict %{x:.3f}<br>%{y" + fmt + "<br>%{customdata[0]} epochs<extra></extra>"),
                row=1, col=col,
            )
    fig.update_xaxes(title_text="conflict fraction (95% interval over steps)")
    fig.update_yaxes(title_text="best dev EER (%)", row=1, col=1)
    fig.update_yaxes(title_text="epochs", row=1, col=2)
    fig.update_layout(title={"text": f"{_TITLES['eer_vs_conflict']}<br><sup>Spearman over {over}; "
                             "x: stopped early (ASHA), not comparable with finished trials</sup>"},
                      legend_title="rule", margin={"t": 110})
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


def fig_search_parcoords(table: pd.DataFrame, space: dict[str, dict] | None = None) -> go.Figure:
    """One axis per searched parameter (its config key; `space` from the experiment's search-space
    snapshot gives the keys and which are log-scaled; without it every `param.` column except
    internal `key:suffix` ones, log-scaled when positive over more than two decades), then the
    conflict fraction and the dev EER (saved model's when any trial has one, else best epoch's)."""
    eer_col = "model_dev_eer" if "model_dev_eer" in table and table["model_dev_eer"].notna().any() else "best_dev_eer"
    data = table.dropna(subset=[eer_col]) if eer_col in table else table.iloc[0:0]
    if data.empty:
        return _empty(_TITLES["search_parcoords"], "no trial has a dev EER")
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
    fig.update_layout(title=_TITLES["search_parcoords"], height=520, margin={"l": 90, "r": 90, "t": 150})
    return fig


def _set_label(set_name: str, trial: str, multi_trial: bool) -> str:
    return f"{set_name} | trial {trial}" if multi_trial else set_name


def fig_test_eer(tests: pd.DataFrame, multi_run: bool) -> go.Figure:
    """Per evaluated set (factor `all`): each model's EER with its bootstrap interval."""
    rows = tests[tests["factor"] == "all"]
    if rows.empty:
        return _empty(_TITLES["test_eer"], "no evaluated model (a trained run's eval/metrics.csv)")
    fig = go.Figure()
    for set_name, grp in rows.groupby("set", sort=True):
        labels = [_trial_label(r, t, multi_run) for r, t in zip(grp["run_id"], grp["trial_id"])]
        eer = grp["eer"] * 100
        fig.add_trace(go.Scatter(
            x=eer, y=[f"trial {lab}" for lab in labels], mode="markers", name=str(set_name),
            error_x=_errors(grp["eer"], grp["eer_low"], grp["eer_high"], 100),
            customdata=np.stack([grp["eer_low"] * 100, grp["eer_high"] * 100, grp["trials"]], axis=1),
            hovertemplate=f"{set_name}, %{{y}}<br>EER %{{x:.2f}}% [%{{customdata[0]:.2f}}, "
            "%{customdata[1]:.2f}]<br>%{customdata[2]} utterances<extra></extra>"))
    n = rows[["run_id", "trial_id"]].drop_duplicates().shape[0]
    fig.update_layout(title=_TITLES["test_eer"], xaxis_title="EER (%), 95% bootstrap interval",
                      yaxis={"type": "category", "autorange": "reversed"}, scattermode="group",
                      legend_title="test set", height=int(min(1200, max(300, 60 * n + 150))))
    return fig


def fig_test_eer_by_attack(tests: pd.DataFrame, multi_run: bool) -> go.Figure:
    """Per (set, attack): each model's EER with its bootstrap interval."""
    rows = tests[tests["factor"] == "attack"]
    if rows.empty:
        return _empty(_TITLES["test_eer_by_attack"], "no per-attack breakdown (eval/<set>.breakdown.csv)")
    fig = go.Figure()
    for (run_id, trial_id), grp in rows.groupby(["run_id", "trial_id"], sort=True):
        label = _trial_label(run_id, trial_id, multi_run)
        fig.add_trace(go.Scatter(
            x=grp["eer"] * 100, y=grp["set"] + ": " + grp["value"], mode="markers", name=f"trial {label}",
            error_x=_errors(grp["eer"], grp["eer_low"], grp["eer_high"], 100),
            customdata=np.stack([grp["eer_low"] * 100, grp["eer_high"] * 100, grp["trials"]], axis=1),
            hovertemplate=f"trial {label}, %{{y}}<br>EER %{{x:.2f}}% [%{{customdata[0]:.2f}}, "
            "%{customdata[1]:.2f}]<br>%{customdata[2]} utterances<extra></extra>"))
    n = rows[["set", "value"]].drop_duplicates().shape[0]
    n_trials = rows[["run_id", "trial_id"]].drop_duplicates().shape[0]
    fig.update_layout(title=_TITLES["test_eer_by_attack"], xaxis_title="EER (%), 95% bootstrap interval",
                      yaxis={"type": "category", "autorange": "reversed"}, scattermode="group",
                      legend_title="model", height=int(min(1600, max(320, (14 + 6 * n_trials) * n + 150))))
    return fig


_TABLE_COLUMNS = [
    ("rank", "rank"), ("trial", "trial"), ("status", "status"), ("rule", "rule"), ("rawboost_algo", "RawBoost algo"),
    ("strength", "strength"), ("model_dev_eer", "saved model dev EER"), ("model_dev_eer_ci", "95% interval"),
    ("best_dev_eer", "best epoch dev EER"), ("best_epoch", "best epoch"), ("epochs", "epochs"),
    ("conflict_fraction", "conflict fraction"), ("conflict_ci", "95% interval (steps)"), ("mean_cos", "mean cos"),
    ("steps", "steps"), ("attempts", "attempts"),
]


def trials_table_html(table: pd.DataFrame, multi_run: bool, tests: pd.DataFrame) -> str:
    """The trials as an HTML table: full headers, every column, click-to-sort (raw values sort,
    formatted values show), early-stopped rows greyed; each test set's EER as a column."""
    if table.empty:
        return '<p class="note">no trials</p>'
    show = table.copy()
    show["trial"] = [_trial_label(r, t, multi_run) for r, t in zip(show["run_id"], show["trial_id"])]
    show["model_dev_eer_ci"] = [_interval(lo, hi).strip() for lo, hi in
                                zip(show.get("model_dev_eer_low", np.nan), show.get("model_dev_eer_high", np.nan))]
    show["conflict_ci"] = [_interval(lo, hi).strip() for lo, hi in zip(show["conflict_low"], show["conflict_high"])]
    columns = [(c, h) for c, h in _TABLE_COLUMNS if c in show]
    sets = tests[tests["factor"] == "all"]
    for set_name, grp in sets.groupby("set", sort=True):
        col = f"test.{set_name}"
        by = {(r, t): (e, lo, hi) for r, t, e, lo, hi in
              zip(grp["run_id"], grp["trial_id"], grp["eer"], grp["eer_low"], grp["eer_high"])}
        show[col] = [by.get((r, t), (np.nan,) * 3)[0] for r, t in zip(show["run_id"], show["trial_id"])]
        show[col + "_ci"] = [_interval(*by.get((r, t), (np.nan,) * 3)[1:]).strip()
                             for r, t in zip(show["run_id"], show["trial_id"])]
        columns += [(col, f"{set_name} EER"), (col + "_ci", f"{set_name} 95% interval")]
    columns += [(c, c.removeprefix("param.")) for c in show.columns if c.startswith("param.") and ":" not in c]
    percent = {"model_dev_eer", "best_dev_eer", *(c for c, _ in columns if c.startswith("test.")
                                                   and not c.endswith("_ci"))}

    def cell(col: str, v: object) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)) or (not isinstance(v, str) and pd.isna(v)):
            return '<td data-v=""></td>'
        raw = html.escape(str(v), quote=True)
        if col in percent:
            text = f"{float(v) * 100:.2f}%"
        elif isinstance(v, (float, np.floating)):
            text = f"{float(v):.4g}"
        else:
            text = str(v)
        return f'<td data-v="{raw}">{html.escape(text)}</td>'

    head = "".join(f'<th title="{html.escape(c)}">{html.escape(h)}</th>' for c, h in columns)
    body = []
    for _, row in show.iterrows():
        cls = ' class="stopped"' if row.get("status") == STOPPED else ""
        body.append(f"<tr{cls}>" + "".join(cell(c, row[c]) for c, _ in columns) + "</tr>")
    return (f'<div class="table-wrap"><table class="sortable" id="trials-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


@dataclass
class _Inputs:
    """What the figures and the trials table share (each a query over the telemetry)."""

    table: pd.DataFrame
    tests: pd.DataFrame
    space: dict[str, dict] | None
    multi_run: bool
    colors: dict[str, str]
    rule_of: dict[tuple[str, str], str]
    order: list[tuple[str, str]]
    stopped: set[tuple[str, str]]


def _inputs(tel: Telemetry) -> _Inputs:
    table = Q.comparison_table(tel)
    rules = sorted(table["rule"].dropna().astype(str).unique())
    return _Inputs(
        table=table,
        tests=read_test_eers(tel.trials, tel.location),
        space=read_search_space(tel.path, list(tel.trials["run_dir"]), tel.location),
        multi_run=table["run_id"].nunique() > 1,
        colors=_rule_colors(rules),
        rule_of={(r, t): rule for r, t, rule in zip(table["run_id"], table["trial_id"], table["rule"])},
        order=[(r, t) for r, t, h in zip(table["run_id"], table["trial_id"], table["has_telemetry"]) if h],
        stopped={(r, t) for r, t, st in zip(table["run_id"], table["trial_id"], table["status"]) if st == STOPPED},
    )


def build_figures(tel: Telemetry, *, heatmap_bins: int = 60, heatmap_trials: int = 8,
                  hist_bins: int = 40, on_figure: Callable[[str], None] | None = None,
                  inputs: _Inputs | None = None) -> dict[str, go.Figure]:
    """All report figures, keyed as in `FIGURE_ORDER`; `on_figure(name)` is called as each one is
    done (progress for large experiments, where each is a query over the telemetry)."""
    i = inputs or _inputs(tel)
    makers: dict[str, Callable[[], go.Figure]] = {
        "conflict_by_epoch": lambda: fig_conflict_by_epoch(Q.conflict_by_epoch(tel), i.colors, i.multi_run, i.stopped),
        "dev_eer_by_epoch": lambda: fig_dev_eer_by_epoch(Q.epoch_metrics(tel), i.rule_of, i.colors, i.multi_run,
                                                         i.stopped),
        "conflict_by_rule_algo": lambda: fig_conflict_by_rule_algo(Q.conflict_across_trials(tel, ["rule", "rawboost_algo"])),
        "layer_heatmap": lambda: fig_layer_heatmap(tel, i.order, heatmap_bins, heatmap_trials, i.multi_run),
        "layer_conflict": lambda: fig_layer_conflict(Q.conflict_by_module_and_rule(tel)),
        "cosine_histogram": lambda: fig_cosine_histogram(Q.cosine_histogram(tel, by="rule", bins=hist_bins), i.colors),
        "eer_vs_conflict": lambda: fig_eer_vs_conflict(Q.eer_vs_conflict(tel), i.colors, i.multi_run),
        "search_parcoords": lambda: fig_search_parcoords(i.table, i.space),
        "test_eer": lambda: fig_test_eer(i.tests, i.multi_run),
        "test_eer_by_attack": lambda: fig_test_eer_by_attack(i.tests, i.multi_run),
    }
    figures = {}
    for name, make in makers.items():
        figures[name] = make()
        if on_figure is not None:
            on_figure(name)
    return figures


def _summary_html(tel: Telemetry, tests: pd.DataFrame) -> str:
    s = Q.summary(tel)
    points = Q.eer_vs_conflict(tel)
    corr = points.attrs.get("spearman", {})
    pct = _pct
    if s["model_dev_eer"] is not None:
        headline = ("best trial by its saved model's dev EER (model.pt, averaged best epochs)",
                    f"{s['best_trial']}: {pct(s['model_dev_eer'])}"
                    f"{_interval(s['model_dev_eer_low'], s['model_dev_eer_high'])} (95% bootstrap); "
                    f"its best epoch ({s['best_epoch']}) scored {pct(s['best_epoch_dev_eer'])}, lower by selection")
    else:
        headline = ("best epoch's dev EER (no trial saved a model yet; not what a saved model scores)",
                    f"{s['best_trial'] or 'n/a'}: {pct(s['best_epoch_dev_eer'])} at epoch {s['best_epoch']}")
    rows = [
        ("source", s["runs_dir"]),
        ("trials (with telemetry; completed)", f"{s['trials']} ({s['trials_with_telemetry']}; {s['trials_completed']})"),
        ("optimisation steps (skipped)", f"{s['steps']:,} ({s['skipped_steps']:,})"),
        ("per-layer rows", f"{s['layer_rows']:,}"),
        ("epochs logged", f"{s['epochs']:,}"),
        ("restarts (superseded rows removed)", str(s["restarts"])),
        ("overall conflict fraction (95% interval over steps)",
         pct(s["conflict_fraction"]) + _interval(s["conflict_low"], s["conflict_high"])),
        ("mean cos(g_orig, g_aug)", "n/a" if s["mean_cos"] is None else f"{s['mean_cos']:.3f}"),
        headline,
    ]
    if s["model_dev_eer_high"] is not None:
        table = Q.comparison_table(tel)
        others = table[(table["status"] == COMPLETED) & (table["rank"] > 1)]
        overlap = others[others["model_dev_eer_low"] <= s["model_dev_eer_high"]]
        rows.append(("completed trials whose saved-model interval overlaps the best's (not separable)",
                     f"{len(overlap)} of {len(others)}"
                     + (f": {', '.join(map(str, overlap['trial_id'][:8]))}" if len(overlap) else "")))
    best = tests[(tests["factor"] == "all")]
    if s["best_trial"] and len(best):
        run_id, trial_id = s["best_trial"].split("/", 1)
        mine = best[(best["run_id"] == run_id) & (best["trial_id"] == trial_id)]
        if len(mine):
            rows.append(("that model's test-set EERs (95% bootstrap)", "; ".join(
                f"{r.set} {pct(r.eer)}{_interval(r.eer_low, r.eer_high)}" for r in mine.itertuples())))
    if tel.skipped:  # the figures lack these parts' rows: say so where the numbers are read
        more = f" and {len(tel.skipped) - 5} more" if len(tel.skipped) > 5 else ""
        rows.append(("part files left out (not readable Parquet)", ", ".join(tel.skipped[:5]) + more))
    if tel.missing:  # parts deleted or never copied (dpda_analysis.gaps): these numbers lack their rows
        rows.append(("telemetry parts missing (their rows are absent)", "; ".join(tel.missing)))
    over = points.attrs.get("spearman_over", "all trials")
    for outcome, label in (("best_dev_eer", "best dev EER"), ("epochs_to_best", "epochs-to-best")):
        if outcome in corr:
            rows.append((f"Spearman: conflict fraction vs {label} ({over})", _rho_text(corr[outcome])))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="summary" id="summary">{body}</table>'


def render_html(tel: Telemetry, figures: dict[str, go.Figure], title: str, inputs: _Inputs | None = None) -> str:
    """The whole report page as one string (plotly.js inline)."""
    i = inputs or _inputs(tel)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        _HEAD_SCRIPT,
        _CSS,
        "</head><body>",
        '<pre id="js-errors" data-count="0"></pre>',
        '<pre id="render-status" data-rendered="0" data-total="0"></pre>',
        f"<h1>{html.escape(title)}</h1>",
        _summary_html(tel, i.tests),
        '<p class="note">Conflict: cos(g_orig, g_aug) &lt; 0 on a non-skipped step (per layer: on that '
        "parameter tensor). Steps of restarted attempts are counted once, from the lineage that finished. "
        "Epochs are numbered from 1. Intervals over steps treat steps as independent; consecutive steps "
        "are correlated, so they understate the uncertainty: compare trials by the across-seed intervals "
        "where there are several seeds. EER intervals are stratified bootstrap (1000 draws).</p>",
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>',
    ]
    for name in (*FIGURE_ORDER, EVALUATION_FIGURE):
        if name not in figures:
            continue
        div = figures[name].to_html(
            full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(f'<section class="dpda-figure" id="section-{name}">{div}</section>')
    parts.append(f'<section id="section-{TRIALS_TABLE}"><h2>{html.escape(_TITLES[TRIALS_TABLE])}</h2>'
                 f"{trials_table_html(i.table, i.multi_run, i.tests)}</section>")
    parts += [_TAIL_SCRIPT, "</body></html>"]
    return "\n".join(parts)


def export_pngs(figures: dict[str, go.Figure], out_dir: str | os.PathLike) -> tuple[list[Path], str | None]:
    """Static PNGs via kaleido when it is installed; otherwise ([], reason)."""
    if importlib.util.find_spec("kaleido") is None:
        return [], ("PNG export needs the optional package 'kaleido' (pip install kaleido), "
                    "which is not installed; the HTML report was written without PNGs")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = out / f"{name}.png"
        try:
            fig.write_image(str(path), width=1200, height=fig.layout.height or 500)
        except Exception as exc:  # kaleido present but its browser/engine is not usable
            return paths, f"PNG export failed at {name}: {exc}"
        paths.append(path)
    return paths, None


def write_report(
    source: str | os.PathLike | Telemetry,
    out_html: str | os.PathLike,
    *,
    png_dir: str | os.PathLike | None = None,
    title: str | None = None,
    heatmap_bins: int = 60,
    heatmap_trials: int = 8,
    on_figure: Callable[[str], None] | None = None,
    evaluation: str | os.PathLike | None = None,
) -> ReportResult:
    """Write the report for a run, directory of runs or Tune experiment (or an open Telemetry);
    `on_figure` as in `build_figures`. `evaluation`: an eval folder (metrics.csv, and
    real.summary.csv when the real-audio set was scored) whose EERs get a figure of their own."""
    tel = source if isinstance(source, Telemetry) else Telemetry(source)
    try:
        inputs = _inputs(tel)
        figures = build_figures(tel, heatmap_bins=heatmap_bins, heatmap_trials=heatmap_trials, on_figure=on_figure,
                                inputs=inputs)
        table = read_evaluation(evaluation) if evaluation is not None else None
        if table is not None and len(table):
            figures[EVALUATION_FIGURE] = fig_evaluation(table)
            if on_figure is not None:
                on_figure(EVALUATION_FIGURE)
        page = render_html(tel, figures, title or f"DPDA gradient-conflict report: {tel.path.name}", inputs)
    finally:
        if not isinstance(source, Telemetry):
            tel.close()
    out = Path(out_html)
    if out.is_dir():
        raise AnalysisError(f"{out}: is a directory; give the report's .html file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    result = ReportResult(html_path=out, figures=list(figures))
    if png_dir is not None:
        result.png_paths, result.png_message = export_pngs(figures, png_dir)
    return result
