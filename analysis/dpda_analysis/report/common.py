"""What the report's figures and tables share: labels, interval text, error bars, empty figures.

Why a module of its own: every figure module draws trials and intervals the same way, and the
page's tables print intervals as the figures' hovers do.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

STOPPED_DASH = "dot"  # early-stopped trials' lines
STOPPED_SYMBOL = "x-open"  # and markers


def rule_colors(rules: list[str]) -> dict[str, str]:
    palette = qualitative.Plotly
    return {r: palette[i % len(palette)] for i, r in enumerate(sorted(rules))}


def empty_figure(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=250)
    return fig


def trial_label(run_id: str, trial_id: str, multi_run: bool) -> str:
    return f"{run_id}/{trial_id}" if multi_run else str(trial_id)


def interval(low: object, high: object) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" [{float(low) * 100:.1f}, {float(high) * 100:.1f}]%"


def error_bars(values: pd.Series, low: pd.Series, high: pd.Series, scale: float = 1.0) -> dict:
    """Plotly asymmetric error bars from interval bounds (no bar where a bound is NaN)."""
    return {"type": "data", "symmetric": False, "array": ((high - values) * scale).fillna(0).to_numpy(float),
            "arrayminus": ((values - low) * scale).fillna(0).to_numpy(float), "thickness": 1.2, "width": 3}


def integer_axis(fig: go.Figure, values: pd.Series, **where: int) -> None:
    """Whole-number ticks (epochs), one per value while there are few."""
    span = (values.max() - values.min()) if len(values) else 0
    fig.update_xaxes(tickformat="d", dtick=1 if span <= 20 else None, **where)


def rho_text(corr: dict) -> str:
    if not corr or pd.isna(corr.get("rho")):
        return f"Spearman n/a (n={corr.get('n', 0)})"
    return f"Spearman rho {corr['rho']:+.2f}, p={corr['p']:.2g}, n={corr['n']}"
