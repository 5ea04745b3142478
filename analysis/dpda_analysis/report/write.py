"""Writing the report: the page (atomically) and, with kaleido installed, one PNG per figure."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go

from dpda_analysis.errors import AnalysisError
from dpda_analysis.evaluation import fig_evaluation, read_evaluation
from dpda_analysis.report.common import is_omitted
from dpda_analysis.report.figures import EVALUATION_FIGURE, build_figures
from dpda_analysis.report.inputs import report_inputs
from dpda_analysis.report.page import render_html
from dpda_analysis.store import Telemetry


@dataclass
class ReportResult:
    html_path: Path
    figures: list[str]
    png_paths: list[Path] = field(default_factory=list)
    png_message: str | None = None  # why PNGs were not written, if they were requested


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
    det_by_attack: bool = False,
) -> ReportResult:
    """Write the report for a run, directory of runs or Tune experiment (or an open Telemetry);
    `on_figure` as in `build_figures`. `evaluation`: an eval folder (what `dpda eval` writes: metrics.csv,
    breakdowns, scores and keys; real.summary.csv when the real-audio set was scored): its model joins
    the evaluation views (named after its trial when it is one) and, when the real-audio set was
    scored, its EERs get a figure of their own. `det_by_attack`: draw the per-attack DET view. Figures with nothing to show are
    left out of the page with a one-line note; `ReportResult.figures` lists those drawn."""
    tel = source if isinstance(source, Telemetry) else Telemetry(source)
    try:
        inputs = report_inputs(tel, os.path.abspath(evaluation) if evaluation is not None else None)
        figures = build_figures(tel, heatmap_bins=heatmap_bins, heatmap_trials=heatmap_trials, on_figure=on_figure,
                                inputs=inputs, det_by_attack=det_by_attack)
        table = read_evaluation(evaluation) if evaluation is not None else None
        # only with the real-set rows: the evaluated sets alone are the test_eer view's, for this model too
        if table is not None and (table["group"] != "evaluated sets").any():
            asked = inputs.evaluated[inputs.evaluated["location"] == "local"]
            model = inputs.label(asked["run_id"].iloc[0], asked["trial_id"].iloc[0]) if len(asked) else None
            figures[EVALUATION_FIGURE] = fig_evaluation(table, model)
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
    drawn = {name: fig for name, fig in figures.items() if is_omitted(fig) is None}
    result = ReportResult(html_path=out, figures=list(drawn))
    if png_dir is not None:
        result.png_paths, result.png_message = export_pngs(drawn, png_dir)
    return result
