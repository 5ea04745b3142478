"""Per-layer figures: the mean-cosine heatmap (tensors x step bins) and conflict per module and rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dpda_analysis import queries
from dpda_analysis.report.common import empty_figure, trial_label
from dpda_analysis.store import Telemetry


def module_ticks(names: list[str]) -> tuple[list[float], list[str], list[int]]:
    """(tick positions, labels, boundaries) for tensors in parameter order: a boundary where the
    module changes, and a label at the middle of each module where there is room (~60 on the axis).
    A label's bracketed number is the module's tensor count, as in the per-module conflict figure.

    Runs of small numbered siblings (7 convolutions of one tensor each) share one label
    (`...conv_layers.0-6`); then labels are placed largest module first, skipping any closer
    than 1/60 of the axis to one already placed."""
    modules = [queries.module_of(n) for n in names]
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
            labelled.append((centre, f"{name} ({size})"))
    labelled.sort()
    return [s for s, _ in labelled], [t for _, t in labelled], starts[1:]


def fig_layer_heatmap(tel: Telemetry, order: list[tuple[str, str]], bins: int, max_trials: int,
                      multi_run: bool, *, title: str) -> go.Figure:
    names = queries.layer_names(tel)
    fig = go.Figure()
    labels, ticks = [], []
    for run_id, trial_id in order:
        if len(labels) >= max_trials:
            break
        cells = queries.layer_heatmap(tel, run_id, trial_id, bins=bins)
        if cells.empty:
            continue
        grid = cells.pivot(index="layer", columns="bin", values="mean_cos").sort_index()
        spans = cells.groupby("bin")[["step_lo", "step_hi"]].first().reindex(grid.columns)
        trial_names = names[(names["run_id"] == run_id) & (names["trial_id"] == trial_id)].set_index("layer")["name"]
        full = [str(trial_names.get(i, f"layer {i}")) for i in grid.index]
        x = ((spans["step_lo"] + spans["step_hi"]) / 2).to_numpy()
        label = trial_label(run_id, trial_id, multi_run)
        fig.add_trace(
            go.Heatmap(
                z=grid.to_numpy(np.float32), x=x, y=grid.index.to_numpy(), zmin=-1, zmax=1, zmid=0,
                colorscale="RdBu", colorbar={"title": {"text": "mean cos"}}, visible=not labels, name=label,
                customdata=np.repeat(np.array(full, dtype=object)[:, None], len(x), axis=1),
                hovertemplate="%{customdata}<br>tensor index %{y}<br>step ~%{x:.0f}<br>mean cos %{z:.3f}<extra></extra>",
            )
        )
        labels.append(label)
        ticks.append(module_ticks(full))
    if not labels:
        return empty_figure(title, "no per-layer telemetry")
    tickvals, ticktext, bounds = ticks[0]
    n_layers = len(fig.data[0].y)
    buttons = [
        {"label": f"trial {lab}", "method": "update",
         "args": [{"visible": [j == i for j in range(len(labels))]},
                  {"title": {"text": f"{title}: trial {lab}"},
                   "yaxis.tickvals": ticks[i][0], "yaxis.ticktext": ticks[i][1]}]}
        for i, lab in enumerate(labels)
    ]
    fig.update_layout(
        title=f"{title}: trial {labels[0]}",
        xaxis_title="step (drag to zoom, double-click to reset)",
        yaxis={"title": "module (tensors)", "autorange": "reversed", "tickvals": tickvals, "ticktext": ticktext,
               "tickfont": {"size": 10}, "automargin": True},
        shapes=[{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": b - 0.5, "y1": b - 0.5,
                 "line": {"color": "rgba(0,0,0,0.25)", "width": 0.6}} for b in bounds],
        height=int(min(1100, max(420, 10 * n_layers + 160)) if n_layers <= 90 else 1100),
        updatemenus=[{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.08, "yanchor": "bottom"}]
        if len(labels) > 1 else [],
    )
    return fig


def fig_layer_conflict(modules: pd.DataFrame, *, title: str) -> go.Figure:
    """Modules (rows, in parameter order) x rules (columns): per-layer conflict pooled per rule."""
    if modules.empty:
        return empty_figure(title, "no per-layer telemetry")
    grid = modules.pivot(index="module", columns="variant", values="conflict_fraction")
    order = modules.groupby("module")["first_layer"].min().sort_values().index
    grid = grid.reindex(order)
    tensors = modules.groupby("module")["tensors"].max().reindex(order)
    rows = modules.pivot(index="module", columns="variant", values="rows").reindex(order)
    y = [f"{m} ({int(t)})" for m, t in zip(order, tensors)]
    fig = go.Figure(go.Heatmap(
        z=grid.to_numpy(float), x=list(grid.columns), y=y, colorscale="Reds", zmin=0,
        colorbar={"title": {"text": "conflict"}}, customdata=rows.to_numpy(float),
        hovertemplate="%{y} tensors<br>rule %{x}<br>conflict %{z:.3f} over %{customdata:.0f} tensor-steps"
        "<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="rule", xaxis_side="top",
                      yaxis={"autorange": "reversed", "title": "module (tensors)", "tickfont": {"size": 10},
                             "automargin": True},
                      height=int(min(1400, max(360, 16 * len(y) + 180))))
    return fig
