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
    """One colour per rule (variant), for figures that pool a rule's trials."""
    palette = qualitative.Plotly
    return {r: palette[i % len(palette)] for i, r in enumerate(sorted(rules))}


TRIAL_PALETTE = qualitative.D3 + qualitative.Dark24[4:]  # trials: apart from the rules' palette; repeats after 30


def trial_colors(trials: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """One colour per trial ((run_id, trial_id), in the given order), the same in every figure."""
    return {key: TRIAL_PALETTE[i % len(TRIAL_PALETTE)] for i, key in enumerate(trials)}


def is_omitted(fig: go.Figure) -> str | None:
    """The one-line reason a figure is left out of the page, or None when it is drawn."""
    meta = fig.layout.meta
    return meta.get("omitted") if isinstance(meta, dict) else None


def empty_figure(title: str, message: str) -> go.Figure:
    """A view with nothing to show: the page leaves it out and says why in one line (`is_omitted`),
    so no empty view stands beside a full one."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, height=250, meta={"omitted": message})
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
