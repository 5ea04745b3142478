"""The Pareto front of a search with several objectives: every completed trial on the first two
objectives, the front's trials marked and joined in order."""

from __future__ import annotations

import plotly.graph_objects as go

from dpda_analysis.pareto import SearchFront
from dpda_analysis.report.common import empty_figure
from dpda_analysis.report.inputs import ReportInputs


def _label(key: str) -> str:
    """`model_dev_min_dcf` -> `dev min_dcf (saved model)`, as the objective is defined (docs/tune.md)."""
    return key.removeprefix("model_").replace("_", " ", 1) + " (saved model)"


def fig_pareto_front(front: SearchFront | None, inputs: ReportInputs, *, title: str) -> go.Figure:
    """Grey: completed trials the front dominates; one colour per front trial (the trial's colour in
    every figure), joined in the order of the first objective. More than two objectives: drawn on
    the first two, the others in the hover, and the subtitle says so."""
    if front is None or front.trials.empty:
        return empty_figure(title, "needs a search with several objectives that completed trials (pareto.csv)")
    x, y = front.objectives[:2]
    keys = {key[1]: key for key in inputs.trial_color}  # trial id -> (run_id, trial_id)
    on_front = set(front.front["trial_id"].astype(str))
    rest = front.trials[~front.trials["trial_id"].astype(str).isin(on_front)]
    fig = go.Figure()
    hover = "".join(f"<br>{_label(k)} %{{customdata[{i}]:.4g}}" for i, k in enumerate(front.objectives))
    fig.add_trace(go.Scatter(x=rest[x], y=rest[y], mode="markers", name="dominated",
                             marker={"color": "#bbb", "size": 8}, text=rest["trial_id"].astype(str),
                             customdata=rest[front.objectives].to_numpy(float),
                             hovertemplate="trial %{text}" + hover + "<extra>dominated</extra>"))
    ordered = front.front.sort_values(x, ascending=front.mode == "min")
    fig.add_trace(go.Scatter(x=ordered[x], y=ordered[y], mode="lines", line={"color": "#d62728", "dash": "dot"},
                             name="Pareto front", hoverinfo="skip"))
    for _, row in ordered.iterrows():
        trial = str(row["trial_id"])
        key = keys.get(trial)
        name = inputs.label(*key) if key else f"trial {trial}"
        fig.add_trace(go.Scatter(x=[row[x]], y=[row[y]], mode="markers", name=name, text=[trial],
                                 marker={"color": inputs.color(*key) if key else "#d62728", "size": 12,
                                         "line": {"color": "#d62728", "width": 2}},
                                 customdata=[row[front.objectives].to_numpy(float)],
                                 hovertemplate="trial %{text}" + hover + "<extra>on the front</extra>"))
    sub = (f"{len(on_front)} of {len(front.trials)} completed trials on the front ({front.mode}imise each)"
           + (f"; {len(front.objectives)} objectives, drawn on the first two" if len(front.objectives) > 2 else ""))
    fig.update_layout(title={"text": f"{title}<br><sup>{sub}</sup>"}, xaxis_title=_label(x), yaxis_title=_label(y),
                      height=450)
    return fig
