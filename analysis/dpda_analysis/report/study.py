"""The study report: one Plotly figure (conflict fraction and EERs per variant, mean with its 95%
Student-t interval across seeds), written as study.html beside study.md.

Why a page of its own rather than a figure of the search report: a study's runs are seeds of a few
variants, so the only honest interval is across seeds, and every variant has the same budget; the
search report's rule views describe trials that are neither.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
import plotly.offline
from plotly.subplots import make_subplots

from dpda_analysis.report.common import error_bars

BASELINE_COLOR = "#7f7f7f"
VARIANT_COLOR = "#1f77b4"


def study_figure(summary: pd.DataFrame, headings: Mapping[str, tuple[str, float]], variants: Sequence[str],
                 baseline: str) -> go.Figure:
    """One panel per metric (`headings`: metric -> (title, scale to the unit shown), in panel
    order): each variant's mean over seeds with its 95% t-interval (the baseline grey);
    `summary` is dpda_analysis.study.variant_summary's frame."""
    metrics = list(headings)
    fig = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[headings[m][0] for m in metrics])
    for row, metric in enumerate(metrics, start=1):
        sub = summary[summary["metric"] == metric].set_index("variant").reindex(list(variants))
        scale = headings[metric][1]
        fig.add_trace(go.Bar(
            x=list(variants), y=sub["mean"] * scale,
            error_y=error_bars(sub["mean"], sub["low"], sub["high"], scale),
            marker_color=[BASELINE_COLOR if v == baseline else VARIANT_COLOR for v in variants],
            customdata=sub["seeds"], showlegend=False, name=headings[metric][0],
            hovertemplate="%{x}: %{y:.2f} (%{customdata} seeds)<extra></extra>",
        ), row=row, col=1)
    fig.update_layout(height=260 * len(metrics) + 80, margin={"t": 60},
                      title=f"Per variant: mean over seeds, 95% Student-t interval across seeds (grey: {baseline})")
    return fig


def study_html(title: str, figure: go.Figure, differences: pd.DataFrame | None = None, baseline: str = "") -> str:
    """A self-contained page (plotly.js inline: it opens without a network): the figure, then the
    paired differences (`differences`: display-ready columns, as in study.md)."""
    div = figure.to_html(full_html=False, include_plotlyjs=False, div_id="fig-study",
                         config={"displaylogo": False, "responsive": True})
    table = "" if differences is None else (
        f"<h2>Paired differences: each variant minus {html.escape(baseline)}, same seed</h2>"
        "<p>Mean difference [95% t-interval across seeds], paired t-test, Holm correction over all comparisons "
        "(also in study.md and study.csv).</p>" + differences.to_html(index=False, border=0))
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif} td,th{padding:2px 12px;text-align:left}</style>",
        "</head><body>", f"<h1>{html.escape(title)}</h1>",
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>', div, table, "</body></html>",
    ])
