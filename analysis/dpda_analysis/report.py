"""The interactive conflict-analysis report: one self-contained, offline HTML file.

plotly.js is embedded inline once (no CDN, no network at view time), each figure is a div.
A tiny script at the top records JavaScript errors into `#js-errors` and a script at the end
records, per figure, whether Plotly drew it (`#render-status`), so a headless browser test can
check the page without a JS console.
"""

from __future__ import annotations

import html
import importlib.util
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
from dpda_analysis.evaluation import fig_evaluation, read_evaluation
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
    "trials_table",
)
EVALUATION_FIGURE = "evaluation"  # added after FIGURE_ORDER when an eval folder is given

_TITLES = {
    "conflict_by_epoch": "Conflict fraction per epoch (whole-model cos(g_orig, g_aug) < 0)",
    "dev_eer_by_epoch": "Dev EER per epoch",
    "conflict_by_rule_algo": "Conflict fraction by alignment rule and RawBoost algorithm",
    "layer_heatmap": "Per-layer mean cosine over training (layers x step bins)",
    "layer_conflict": "Per-layer conflict fraction (all trials pooled)",
    "cosine_histogram": "Distribution of cos(g_orig, g_aug) per rule",
    "eer_vs_conflict": "Best dev EER and epochs-to-best against conflict fraction (one point per trial)",
    "search_parcoords": "Search: parameters against best dev EER",
    "trials_table": "Trials, ranked by best dev EER",
}

_HEAD_SCRIPT = """<script>
window.__dpdaErrors = [];
function __dpdaShow() {
  var el = document.getElementById('js-errors');
  if (el) { el.textContent = window.__dpdaErrors.join('\\n'); el.dataset.count = window.__dpdaErrors.length; }
}
function __dpdaRecord(msg) { window.__dpdaErrors.push(String(msg)); __dpdaShow(); }
window.addEventListener('error', function (e) { __dpdaRecord('error: ' + (e.message || e.type)); });
window.addEventListener('unhandledrejection', function (e) { __dpdaRecord('rejection: ' + e.reason); });
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
</script>"""

_CSS = """<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1300px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table.summary td, table.summary th { padding: 2px 12px; text-align: left; border-bottom: 1px solid #ddd; }
#js-errors { color: #b00; white-space: pre-wrap; } #js-errors:empty { display: none; }
#render-status { display: none; } .note { color: #666; font-size: 0.9rem; }
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


def fig_conflict_by_epoch(by_epoch: pd.DataFrame, colors: dict[str, str], multi_run: bool) -> go.Figure:
    if by_epoch.empty:
        return _empty(_TITLES["conflict_by_epoch"], "no step telemetry")
    fig = go.Figure()
    shown: set[str] = set()
    for (run_id, trial_id), grp in by_epoch.groupby(["run_id", "trial_id"], sort=True):
        rule = str(grp["rule"].iloc[0])
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["conflict_fraction"], mode="lines+markers",
                name=f"{rule}", legendgroup=rule, showlegend=rule not in shown,
                line={"color": colors.get(rule)},
                hovertemplate=f"trial {_trial_label(run_id, trial_id, multi_run)} ({rule})<br>"
                "epoch %{x}<br>conflict %{y:.3f}<extra></extra>",
            )
        )
        shown.add(rule)
    fig.update_layout(title=_TITLES["conflict_by_epoch"], xaxis_title="epoch",
                      yaxis_title="conflict fraction", legend_title="rule")
    return fig


def fig_dev_eer_by_epoch(metrics: pd.DataFrame, rules: dict, colors: dict[str, str], multi_run: bool) -> go.Figure:
    scored = metrics.dropna(subset=["dev_eer"]) if "dev_eer" in metrics else metrics.iloc[0:0]
    if scored.empty:
        return _empty(_TITLES["dev_eer_by_epoch"], "no dev EER recorded (epochs table or Tune result.json)")
    fig = go.Figure()
    shown: set[str] = set()
    for (run_id, trial_id), grp in scored.groupby(["run_id", "trial_id"], sort=True):
        rule = str(rules.get((run_id, trial_id), "?"))
        fig.add_trace(
            go.Scatter(
                x=grp["epoch"], y=grp["dev_eer"] * 100, mode="lines+markers", name=rule,
                legendgroup=rule, showlegend=rule not in shown, line={"color": colors.get(rule)},
                hovertemplate=f"trial {_trial_label(run_id, trial_id, multi_run)} ({rule})<br>"
                "epoch %{x}<br>dev EER %{y:.2f}%<extra></extra>",
            )
        )
        shown.add(rule)
    fig.update_layout(title=_TITLES["dev_eer_by_epoch"], xaxis_title="epoch", yaxis_title="dev EER (%)",
                      legend_title="rule")
    return fig


def fig_conflict_by_rule_algo(table: pd.DataFrame) -> go.Figure:
    if table.empty:
        return _empty(_TITLES["conflict_by_rule_algo"], "no step telemetry")
    table = table.assign(algo=table["rawboost_algo"].map(lambda a: "none" if pd.isna(a) else f"algo {int(a)}"))
    fig = go.Figure()
    for algo, grp in table.groupby("algo", sort=True):
        fig.add_trace(
            go.Bar(x=grp["rule"], y=grp["conflict_fraction"], name=algo,
                   customdata=np.stack([grp["trials"], grp["steps"]], axis=1),
                   hovertemplate="%{x}, " + algo + "<br>conflict %{y:.3f}<br>%{customdata[0]} trials, "
                   "%{customdata[1]} steps<extra></extra>")
        )
    fig.update_layout(title=_TITLES["conflict_by_rule_algo"], barmode="group", xaxis_title="rule",
                      yaxis_title="conflict fraction", legend_title="RawBoost")
    return fig


def fig_layer_heatmap(tel: Telemetry, order: list[tuple[str, str]], bins: int, max_trials: int,
                      multi_run: bool) -> go.Figure:
    names = Q.layer_names(tel)
    fig = go.Figure()
    labels = []
    for run_id, trial_id in order:
        if len(labels) >= max_trials:
            break
        cells = Q.layer_heatmap(tel, run_id, trial_id, bins=bins)
        if cells.empty:
            continue
        grid = cells.pivot(index="layer", columns="bin", values="mean_cos").sort_index()
        spans = cells.groupby("bin")[["step_lo", "step_hi"]].first().reindex(grid.columns)
        trial_names = names[(names["run_id"] == run_id) & (names["trial_id"] == trial_id)].set_index("layer")["name"]
        y = [f"{i}: {trial_names.get(i, '?')}" for i in grid.index]
        x = ((spans["step_lo"] + spans["step_hi"]) / 2).to_numpy()
        label = _trial_label(run_id, trial_id, multi_run)
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(np.float32), x=x, y=y, zmin=-1, zmax=1, zmid=0, colorscale="RdBu",
                colorbar={"title": "mean cos"}, visible=not labels, name=label,
                hovertemplate="layer %{y}<br>step ~%{x:.0f}<br>mean cos %{z:.3f}<extra></extra>",
            )
        )
        labels.append(label)
    if not labels:
        return _empty(_TITLES["layer_heatmap"], "no per-layer telemetry")
    n_layers = len(fig.data[0].y)
    buttons = [
        {"label": f"trial {lab}", "method": "update",
         "args": [{"visible": [j == i for j in range(len(labels))]}, {"title": f"{_TITLES['layer_heatmap']}: trial {lab}"}]}
        for i, lab in enumerate(labels)
    ]
    fig.update_layout(
        title=f"{_TITLES['layer_heatmap']}: trial {labels[0]}",
        xaxis_title="step", yaxis={"title": "layer", "autorange": "reversed", "showticklabels": n_layers <= 60},
        height=int(min(1100, max(420, 14 * n_layers + 160))),
        updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.12, "yanchor": "top"}] if len(labels) > 1 else [],
    )
    return fig


def fig_layer_conflict(pooled: pd.DataFrame) -> go.Figure:
    if pooled.empty:
        return _empty(_TITLES["layer_conflict"], "no per-layer telemetry")
    fig = go.Figure(
        go.Bar(x=pooled["layer"], y=pooled["conflict_fraction"], customdata=pooled[["name"]].fillna("?"),
               marker={"color": pooled["mean_cos"], "colorscale": "RdBu", "cmin": -1, "cmax": 1,
                       "colorbar": {"title": "mean cos"}},
               hovertemplate="layer %{x}: %{customdata[0]}<br>conflict %{y:.3f}<extra></extra>")
    )
    fig.update_layout(title=_TITLES["layer_conflict"], xaxis_title="layer index (parameter order)",
                      yaxis_title="conflict fraction")
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


def fig_eer_vs_conflict(points: pd.DataFrame, colors: dict[str, str], multi_run: bool) -> go.Figure:
    if points.empty:
        return _empty(_TITLES["eer_vs_conflict"], "needs trials with both step telemetry and a dev EER")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("best dev EER", "epochs to best dev EER"))
    for rule, grp in points.groupby("rule", sort=True):
        text = [_trial_label(r, t, multi_run) for r, t in zip(grp["run_id"], grp["trial_id"])]
        for col, y, fmt in ((1, grp["best_dev_eer"] * 100, ":.2f}%"), (2, grp["epochs_to_best"], "}")):
            fig.add_trace(
                go.Scatter(x=grp["conflict_fraction"], y=y, mode="markers", name=str(rule), text=text,
                           legendgroup=str(rule), showlegend=col == 1,
                           marker={"color": colors.get(str(rule)), "size": 9},
                           hovertemplate="trial %{text}<br>conflict %{x:.3f}<br>%{y" + fmt + "<extra></extra>"),
                row=1, col=col,
            )
    fig.update_xaxes(title_text="conflict fraction")
    fig.update_yaxes(title_text="best dev EER (%)", row=1, col=1)
    fig.update_yaxes(title_text="epochs", row=1, col=2)
    fig.update_layout(title=_TITLES["eer_vs_conflict"], legend_title="rule")
    return fig


def fig_search_parcoords(table: pd.DataFrame) -> go.Figure:
    params = [c for c in table.columns if c.startswith("param.")]
    dims_src = params + [c for c in ("rule", "rawboost_algo", "strength", "conflict_fraction") if c not in
                         {p[len("param."):] for p in params}] + ["best_dev_eer"]
    data = table.dropna(subset=["best_dev_eer"])
    if data.empty:
        return _empty(_TITLES["search_parcoords"], "no trial has a dev EER")
    dims = []
    for col in dims_src:
        if col not in data:
            continue
        values = data[col]
        label = col[len("param."):] if col.startswith("param.") else col
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all() and not values.map(lambda v: isinstance(v, (bool, np.bool_))).any():
            if numeric.nunique() < 1:
                continue
            dims.append({"label": label, "values": numeric.to_numpy(float)})
        else:
            # conditional parameters are missing in trials where they do not apply
            labels = values.map(lambda v: "n/a" if pd.isna(v) else str(v))
            cats = sorted(labels.unique())
            codes = labels.map({c: i for i, c in enumerate(cats)})
            dims.append({"label": label, "values": codes.to_numpy(float), "tickvals": list(range(len(cats))),
                         "ticktext": cats})
    fig = go.Figure(
        go.Parcoords(dimensions=dims,
                     line={"color": data["best_dev_eer"].to_numpy(float) * 100, "colorscale": "Viridis_r",
                           "showscale": True, "colorbar": {"title": "dev EER %"}})
    )
    fig.update_layout(title=_TITLES["search_parcoords"], height=480, margin={"l": 80, "r": 80, "t": 110})
    return fig


def fig_trials_table(table: pd.DataFrame, multi_run: bool) -> go.Figure:
    if table.empty:
        return _empty(_TITLES["trials_table"], "no trials")
    show = table.copy()
    show["trial"] = [_trial_label(r, t, multi_run) for r, t in zip(show["run_id"], show["trial_id"])]
    cols = ["rank", "trial", "rule", "rawboost_algo", "strength", "conflict_fraction", "mean_cos",
            "best_dev_eer", "best_epoch", "epochs_to_best", "epochs", "steps", "attempts"]
    cols += [c for c in show.columns if c.startswith("param.") and c[6:] not in cols]
    cols = [c for c in cols if c in show]

    def fmt(col: str, v: object) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if col == "best_dev_eer":
            return f"{float(v) * 100:.2f}%"
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.4g}"
        return str(v)

    cells = [[fmt(c, v) for v in show[c]] for c in cols]
    fig = go.Figure(go.Table(header={"values": [c.removeprefix("param.") for c in cols], "align": "left"},
                             cells={"values": cells, "align": "left"}))
    fig.update_layout(title=_TITLES["trials_table"], height=int(min(1000, 170 + 32 * (len(show) + 1))))
    return fig


def build_figures(tel: Telemetry, *, heatmap_bins: int = 60, heatmap_trials: int = 8,
                  hist_bins: int = 40, on_figure: Callable[[str], None] | None = None) -> dict[str, go.Figure]:
    """All report figures, keyed as in `FIGURE_ORDER`; `on_figure(name)` is called as each one is
    done (progress for large experiments, where each is a query over the telemetry)."""
    table = Q.comparison_table(tel)
    multi_run = table["run_id"].nunique() > 1
    rules = sorted(table["rule"].dropna().astype(str).unique())
    colors = _rule_colors(rules)
    rule_of = {(r, t): rule for r, t, rule in zip(table["run_id"], table["trial_id"], table["rule"])}
    order = [(r, t) for r, t, h in zip(table["run_id"], table["trial_id"], table["has_telemetry"]) if h]
    makers: dict[str, Callable[[], go.Figure]] = {
        "conflict_by_epoch": lambda: fig_conflict_by_epoch(Q.conflict_by_epoch(tel), colors, multi_run),
        "dev_eer_by_epoch": lambda: fig_dev_eer_by_epoch(Q.epoch_metrics(tel), rule_of, colors, multi_run),
        "conflict_by_rule_algo": lambda: fig_conflict_by_rule_algo(Q.conflict_by(tel, ["rule", "rawboost_algo"])),
        "layer_heatmap": lambda: fig_layer_heatmap(tel, order, heatmap_bins, heatmap_trials, multi_run),
        "layer_conflict": lambda: fig_layer_conflict(Q.conflict_by_layer(tel, per_trial=False)),
        "cosine_histogram": lambda: fig_cosine_histogram(Q.cosine_histogram(tel, by="rule", bins=hist_bins), colors),
        "eer_vs_conflict": lambda: fig_eer_vs_conflict(Q.eer_vs_conflict(tel), colors, multi_run),
        "search_parcoords": lambda: fig_search_parcoords(table),
        "trials_table": lambda: fig_trials_table(table, multi_run),
    }
    figures = {}
    for name, make in makers.items():
        figures[name] = make()
        if on_figure is not None:
            on_figure(name)
    return figures


def _summary_html(tel: Telemetry) -> str:
    s = Q.summary(tel)
    corr = Q.eer_vs_conflict(tel).attrs.get("spearman", {})
    pct = lambda v: "n/a" if v is None else f"{v * 100:.2f}%"  # noqa: E731
    rows = [
        ("source", s["runs_dir"]),
        ("trials (with telemetry)", f"{s['trials']} ({s['trials_with_telemetry']})"),
        ("optimisation steps (skipped)", f"{s['steps']:,} ({s['skipped_steps']:,})"),
        ("per-layer rows", f"{s['layer_rows']:,}"),
        ("epochs logged", f"{s['epochs']:,}"),
        ("restarts (superseded rows removed)", str(s["restarts"])),
        ("overall conflict fraction", pct(s["conflict_fraction"])),
        ("mean cos(g_orig, g_aug)", "n/a" if s["mean_cos"] is None else f"{s['mean_cos']:.3f}"),
        ("best trial / best dev EER", f"{s['best_trial'] or 'n/a'} / {pct(s['best_dev_eer'])}"),
    ]
    if tel.skipped:  # the figures lack these parts' rows: say so where the numbers are read
        more = f" and {len(tel.skipped) - 5} more" if len(tel.skipped) > 5 else ""
        rows.append(("part files left out (not readable Parquet)", ", ".join(tel.skipped[:5]) + more))
    if corr:
        rows.append(("Spearman: conflict vs best dev EER / epochs-to-best",
                     " / ".join("n/a" if np.isnan(v) else f"{v:+.2f}" for v in corr.values())))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="summary" id="summary">{body}</table>'


def render_html(tel: Telemetry, figures: dict[str, go.Figure], title: str) -> str:
    """The whole report page as one string (plotly.js inline)."""
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
        _summary_html(tel),
        '<p class="note">Conflict: cos(g_orig, g_aug) &lt; 0 on a non-skipped step (per layer: on that '
        "parameter tensor). Steps of restarted attempts are counted once, from the lineage that finished.</p>",
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
        figures = build_figures(tel, heatmap_bins=heatmap_bins, heatmap_trials=heatmap_trials, on_figure=on_figure)
        table = read_evaluation(evaluation) if evaluation is not None else None
        if table is not None and len(table):
            figures[EVALUATION_FIGURE] = fig_evaluation(table)
            if on_figure is not None:
                on_figure(EVALUATION_FIGURE)
        page = render_html(tel, figures, title or f"DPDA gradient-conflict report: {tel.path.name}")
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
