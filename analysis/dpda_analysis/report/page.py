"""The report page: one self-contained, offline HTML file around the figures.

plotly.js is embedded inline once (no CDN, no network at view time), each figure is a div.
A tiny script at the top records JavaScript errors into `#js-errors` and a script at the end
records, per figure, whether Plotly drew it (`#render-status`), so a headless browser test can
check the page without a JS console.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from dpda_analysis import queries
from dpda_analysis.evaluation import COMPLETED
from dpda_analysis.report.common import interval, is_omitted, rho_text
from dpda_analysis.report.evaluated import evaluated_models
from dpda_analysis.report.figures import EVALUATION_FIGURE, FIGURE_ORDER
from dpda_analysis.report.inputs import ReportInputs, report_inputs
from dpda_analysis.report.trials_table import TRIALS_TABLE, TRIALS_TABLE_TITLE, trials_table_html
from dpda_analysis.store import Telemetry


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
table.sortable .extra { display: none; } table.sortable.show-all .extra { display: table-cell; }
</style>"""


def _pct(v: object, digits: int = 2) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{float(v) * 100:.{digits}f}%"


def _metric_text(r: pd.Series) -> str:
    """`eval EER 5.10% [4.2, 6.0]%, minDCF 0.1234, actDCF 0.4567, Cllr 0.789` (what metrics.csv holds)."""
    text = f"{r['set']} EER {_pct(r['eer'])}{interval(r['eer_low'], r['eer_high'])}"
    for col, name, digits in (("min_dcf", "minDCF", 4), ("act_dcf", "actDCF", 4), ("cllr", "Cllr", 3)):
        if pd.notna(r.get(col)):
            text += f", {name} {float(r[col]):.{digits}f}"
    return text


def _test_rows(inputs: ReportInputs, best_trial: str | None) -> list[tuple[str, str]]:
    """The headline's test-set rows: the evaluated model (the report's eval folder, else the best-ranked
    evaluated trial), named, and the best trial's too when it was evaluated and is another model."""
    sets = inputs.tests[inputs.tests["factor"] == "all"]
    models = evaluated_models(inputs)
    shown = models[:1]
    if best_trial:
        best = tuple(best_trial.split("/", 1))
        if best in models and best not in shown:
            shown.append(best)
    rows = []
    for run_id, trial_id in shown:
        mine = sets[(sets["run_id"] == run_id) & (sets["trial_id"] == trial_id)]
        calibrated = " (calibrated LLRs)" if mine["calibrated"].fillna(False).astype(bool).all() else ""
        rows.append((f"test sets of {inputs.label(run_id, trial_id)}{calibrated}: EER (95% bootstrap), "
                     "minDCF, actDCF, Cllr", "; ".join(_metric_text(r) for _, r in mine.iterrows())))
    return rows


def _summary_html(tel: Telemetry, inputs: ReportInputs) -> str:
    s = queries.summary(tel)
    points = queries.eer_vs_conflict(tel)
    corr = points.attrs.get("spearman", {})
    if s["model_dev_eer"] is not None:
        headline = ("best trial by its saved model's dev EER (model.pt, averaged best epochs)",
                    f"{s['best_trial']}: {_pct(s['model_dev_eer'])}"
                    f"{interval(s['model_dev_eer_low'], s['model_dev_eer_high'])} (95% bootstrap); "
                    f"its best epoch ({s['best_epoch']}) scored {_pct(s['best_epoch_dev_eer'])}, lower by selection")
    else:
        headline = ("best epoch's dev EER (no trial saved a model yet; not what a saved model scores)",
                    f"{s['best_trial'] or 'n/a'}: {_pct(s['best_epoch_dev_eer'])} at epoch {s['best_epoch']}")
    rows = [
        ("source", s["runs_dir"]),
        ("trials (with telemetry; completed)", f"{s['trials']} ({s['trials_with_telemetry']}; {s['trials_completed']})"),
        ("optimisation steps (skipped)", f"{s['steps']:,} ({s['skipped_steps']:,})"),
        ("per-layer rows", f"{s['layer_rows']:,}"),
        ("epochs logged", f"{s['epochs']:,}"),
        ("restarts (superseded rows removed)", str(s["restarts"])),
        ("overall conflict fraction (95% interval over steps)",
         _pct(s["conflict_fraction"]) + interval(s["conflict_low"], s["conflict_high"])),
        ("mean cos(g_orig, g_aug)", "n/a" if s["mean_cos"] is None else f"{s['mean_cos']:.3f}"),
        headline,
    ]
    if s["model_dev_eer_high"] is not None:
        table = queries.comparison_table(tel)
        others = table[(table["status"] == COMPLETED) & (table["rank"] > 1)]
        overlap = others[others["model_dev_eer_low"] <= s["model_dev_eer_high"]]
        rows.append(("completed trials whose saved-model interval overlaps the best's (not separable)",
                     f"{len(overlap)} of {len(others)}"
                     + (f": {', '.join(map(str, overlap['trial_id'][:8]))}" if len(overlap) else "")))
    rows += _test_rows(inputs, s["best_trial"])
    if tel.skipped:  # the figures lack these parts' rows: say so where the numbers are read
        more = f" and {len(tel.skipped) - 5} more" if len(tel.skipped) > 5 else ""
        rows.append(("part files left out (not readable Parquet)", ", ".join(tel.skipped[:5]) + more))
    if tel.missing:  # parts deleted or never copied (dpda_analysis.gaps): these numbers lack their rows
        rows.append(("telemetry parts missing (their rows are absent)", "; ".join(tel.missing)))
    over = points.attrs.get("spearman_over", "all trials")
    for outcome, label in (("best_dev_eer", "best dev EER"), ("epochs_to_best", "epochs-to-best")):
        if outcome in corr:
            rows.append((f"Spearman: conflict fraction vs {label} ({over})", rho_text(corr[outcome])))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="summary" id="summary">{body}</table>'


def render_html(tel: Telemetry, figures: dict[str, go.Figure], title: str, inputs: ReportInputs | None = None) -> str:
    """The whole report page as one string (plotly.js inline)."""
    i = inputs or report_inputs(tel)
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
        _summary_html(tel, i),
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
        reason = is_omitted(figures[name])
        if reason is not None:  # nothing to show: one line instead of an empty view
            title = figures[name].layout.title.text or name
            parts.append(f'<p class="note omitted" id="omitted-{name}">Not shown: {html.escape(title)}: '
                         f"{html.escape(reason)}.</p>")
            continue
        div = figures[name].to_html(
            full_html=False, include_plotlyjs=False, div_id=f"fig-{name}",
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(f'<section class="dpda-figure" id="section-{name}">{div}</section>')
    parts.append(f'<section id="section-{TRIALS_TABLE}"><h2>{html.escape(TRIALS_TABLE_TITLE)}</h2>'
                 f"{trials_table_html(i.table, i.multi_run, i.tests)}</section>")
    parts += [_TAIL_SCRIPT, "</body></html>"]
    return "\n".join(parts)
