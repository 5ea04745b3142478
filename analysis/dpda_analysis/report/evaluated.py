"""Figures of the evaluated models (a run's eval/ folder, or the folder given to the report): test-set
EERs, per attack and per condition, DET curves and score histograms.

Every view names the model it shows (`ReportInputs.label`), gives each model its trial's colour, and
draws one kind of interval (the stratified bootstrap of `dpda eval`). The DET curves and histograms
read the score and key files of an eval folder; a folder without keys (written before `dpda eval`
wrote them) has EER figures only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dpda_analysis.det import det_curve, probit, probit_axis, thin
from dpda_analysis.evaluation import read_scored_set
from dpda_analysis.report.common import empty_figure, error_bars
from dpda_analysis.report.inputs import ReportInputs

CLASS_COLORS = {"bona fide": "#2ca02c", "spoof": "#d62728"}
BOOTSTRAP = "95% bootstrap interval"
_NO_EVAL = "no evaluated model (a run's eval/metrics.csv, or the report's --evaluation folder)"


def evaluated_models(inputs: ReportInputs) -> list[tuple[str, str]]:
    """The evaluated models, the one the report was asked about first (its `evaluation` folder),
    then the trials in the table's rank order."""
    folders = inputs.evaluated
    if folders is None or folders.empty:
        return []
    have = set(zip(folders["run_id"], folders["trial_id"]))
    asked = [k for k, w in zip(zip(folders["run_id"], folders["trial_id"]), folders["location"]) if w == "local"]
    ranked = [k for k in zip(inputs.table["run_id"], inputs.table["trial_id"]) if k in have and k not in asked]
    rest = sorted(have - set(asked) - set(ranked))
    return asked + ranked + rest


def _metric_hover(grp: pd.DataFrame) -> tuple[np.ndarray, str]:
    """customdata and hover lines: EER interval, utterances, minDCF / actDCF / Cllr where present."""
    data = np.stack([grp["eer_low"] * 100, grp["eer_high"] * 100, grp["trials"], grp["min_dcf"], grp["act_dcf"],
                     grp["cllr"]], axis=1)
    text = ("EER %{x:.2f}% [%{customdata[0]:.2f}, %{customdata[1]:.2f}]<br>%{customdata[2]} utterances"
            "<br>minDCF %{customdata[3]:.4f}, actDCF %{customdata[4]:.4f}, Cllr %{customdata[5]:.3f}")
    return data, text


def models_shown(inputs: ReportInputs, keys: list[tuple[str, str]]) -> str:
    names = [inputs.label(r, t) for r, t in keys]
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def fig_test_eer(inputs: ReportInputs, *, title: str) -> go.Figure:
    """Per evaluated set (factor `all`): each model's EER with its bootstrap interval, one colour per model."""
    rows = inputs.tests[inputs.tests["factor"] == "all"]
    if rows.empty:
        return empty_figure(title, _NO_EVAL)
    models = [k for k in evaluated_models(inputs) if k in set(zip(rows["run_id"], rows["trial_id"]))]
    fig = go.Figure()
    for run_id, trial_id in models:
        grp = rows[(rows["run_id"] == run_id) & (rows["trial_id"] == trial_id)]
        data, text = _metric_hover(grp)
        name = inputs.label(run_id, trial_id)
        fig.add_trace(go.Scatter(
            x=grp["eer"] * 100, y=grp["set"], mode="markers", name=name, marker={"color": inputs.color(run_id, trial_id)},
            error_x=error_bars(grp["eer"], grp["eer_low"], grp["eer_high"], 100), customdata=data,
            hovertemplate=f"{name}, %{{y}}<br>{text}<extra></extra>"))
    n_sets = rows["set"].nunique()
    fig.update_layout(title={"text": f"{title}<br><sup>models: {models_shown(inputs, models)}</sup>"},
                      xaxis_title=f"EER (%), {BOOTSTRAP}", yaxis={"type": "category", "autorange": "reversed"},
                      scattermode="group", legend_title="model", margin={"t": 90},
                      height=int(min(1200, max(300, (30 + 14 * len(models)) * n_sets + 160))))
    return fig


def fig_test_eer_by(inputs: ReportInputs, factors: str, *, title: str) -> go.Figure:
    """Per (set, factor value): each model's EER with its bootstrap interval. `factors`: `attack`
    (spoofs of one attack against all bona fide trials) or `condition` (every other breakdown column:
    codec, transmission, ...)."""
    tests = inputs.tests
    rows = tests[tests["factor"] == "attack"] if factors == "attack" else tests[~tests["factor"].isin(["all", "attack"])]
    if rows.empty:
        what = "per-attack" if factors == "attack" else "per-condition (codec, transmission, ...)"
        return empty_figure(title, f"no {what} breakdown in the evaluated models' <set>.breakdown.csv")
    models = [k for k in evaluated_models(inputs) if k in set(zip(rows["run_id"], rows["trial_id"]))]
    label = rows["set"] + ": " + (rows["value"] if factors == "attack" else rows["factor"] + " " + rows["value"])
    rows = rows.assign(label=label)
    fig = go.Figure()
    for run_id, trial_id in models:
        grp = rows[(rows["run_id"] == run_id) & (rows["trial_id"] == trial_id)]
        data, text = _metric_hover(grp)
        name = inputs.label(run_id, trial_id)
        fig.add_trace(go.Scatter(
            x=grp["eer"] * 100, y=grp["label"], mode="markers", name=name,
            marker={"color": inputs.color(run_id, trial_id)},
            error_x=error_bars(grp["eer"], grp["eer_low"], grp["eer_high"], 100), customdata=data,
            hovertemplate=f"{name}, %{{y}}<br>{text}<extra></extra>"))
    n = rows["label"].nunique()
    fig.add_vline(x=50, line_dash="dot", line_color="#999", annotation_text="chance", annotation_position="top")
    fig.update_layout(title={"text": f"{title}<br><sup>models: {models_shown(inputs, models)}</sup>"},
                      xaxis_title=f"EER (%), {BOOTSTRAP}", yaxis={"type": "category", "autorange": "reversed"},
                      scattermode="group", legend_title="model", margin={"t": 90},
                      height=int(min(1600, max(320, (14 + 6 * len(models)) * n + 160))))
    return fig


def _scored_sets(inputs: ReportInputs, run_id: str, trial_id: str) -> dict[str, pd.DataFrame]:
    """{set: its trials with scores and labels} of one model, sets in metrics.csv order; sets
    without a score or keys file, or without both classes, are left out. Read once per report."""
    if (run_id, trial_id) not in inputs.scored:
        inputs.scored[(run_id, trial_id)] = _read_scored_sets(inputs, run_id, trial_id)
    return inputs.scored[(run_id, trial_id)]


def _first_scored(inputs: ReportInputs) -> tuple[str, str] | None:
    """The first evaluated model (`evaluated_models` order) with score and key files."""
    return next((k for k in evaluated_models(inputs) if _scored_sets(inputs, *k)), None)


def _read_scored_sets(inputs: ReportInputs, run_id: str, trial_id: str) -> dict[str, pd.DataFrame]:
    rows = inputs.tests[(inputs.tests["run_id"] == run_id) & (inputs.tests["trial_id"] == trial_id)
                        & (inputs.tests["factor"] == "all")]
    out = {}
    for name in rows["set"]:
        scored = read_scored_set(inputs.evaluated, run_id, trial_id, name, inputs.location)
        if scored is not None and scored["bonafide"].any() and (~scored["bonafide"]).any():
            out[name] = scored
    return out


def _set_row(inputs: ReportInputs, run_id: str, trial_id: str, set_name: str) -> pd.Series:
    t = inputs.tests
    return t[(t["run_id"] == run_id) & (t["trial_id"] == trial_id) & (t["set"] == set_name)
             & (t["factor"] == "all")].iloc[0]


def _det_trace(scored: pd.DataFrame, name: str, color: str | None, max_points: int, **line: object) -> go.Scatter:
    scores = scored["score"].to_numpy(float)
    curve = det_curve(scores[scored["bonafide"].to_numpy()], scores[~scored["bonafide"].to_numpy()])
    keep = thin(curve, max_points)
    far, frr, thr = curve.far[keep], curve.frr[keep], curve.thresholds[keep]
    return go.Scatter(x=probit(far), y=probit(frr), mode="lines", name=name, line={"color": color, **line},
                      customdata=np.stack([far * 100, frr * 100, thr], axis=1),
                      hovertemplate=f"{name}<br>false alarm %{{customdata[0]:.2f}}%<br>miss %{{customdata[1]:.2f}}%"
                      "<br>threshold %{customdata[2]:.4g}<extra></extra>")


def _grid(names: list[str]) -> tuple[int, int]:
    cols = min(3, len(names))
    return (len(names) + cols - 1) // cols, cols


def _probit_layout(fig: go.Figure, rows: int, cols: int, n: int) -> None:
    for i in range(n):
        r, c = i // cols + 1, i % cols + 1
        fig.update_xaxes(**probit_axis(), title_text="false alarm rate (%), spoofs accepted", row=r, col=c)
        fig.update_yaxes(**probit_axis(), title_text="miss rate (%), bona fide rejected" if c == 1 else None,
                         row=r, col=c)
        fig.add_shape(type="line", x0=probit(0.0005)[()], y0=probit(0.0005)[()], x1=probit(0.8)[()],
                      y1=probit(0.8)[()], line={"color": "#bbb", "dash": "dot", "width": 1}, row=r, col=c)
    fig.update_layout(height=int(380 * rows + 160))


def fig_det_curves(inputs: ReportInputs, max_models: int, max_points: int, *, title: str) -> go.Figure:
    """One panel per test set on probit axes, one curve per evaluated model (up to `max_models`,
    the asked-for and best-ranked first) in its trial's colour, with its EER (metrics.csv) marked
    where the curve crosses the diagonal."""
    models = evaluated_models(inputs)[:max_models]
    per_model = {k: _scored_sets(inputs, *k) for k in models}
    per_model = {k: v for k, v in per_model.items() if v}
    if not per_model:
        return empty_figure(title, "no score and key files in the evaluated models' eval folders "
                                   "(<set>.scores.txt and <set>.keys.csv, written by dpda eval)")
    sets = list(dict.fromkeys(s for v in per_model.values() for s in v))
    rows, cols = _grid(sets)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=sets, horizontal_spacing=0.07)
    for (run_id, trial_id), scored_sets in per_model.items():
        name = inputs.label(run_id, trial_id)
        color = inputs.color(run_id, trial_id)
        for i, set_name in enumerate(sets):
            if set_name not in scored_sets:
                continue
            r, c = i // cols + 1, i % cols + 1
            fig.add_trace(_det_trace(scored_sets[set_name], name, color, max_points).update(
                legendgroup=name, showlegend=i == 0), row=r, col=c)
            eer = float(_set_row(inputs, run_id, trial_id, set_name)["eer"])
            fig.add_trace(go.Scatter(x=probit([eer]), y=probit([eer]), mode="markers", name=f"{name} EER",
                                     legendgroup=name, showlegend=False,
                                     marker={"color": color, "size": 9, "symbol": "circle-open", "line": {"width": 2}},
                                     hovertemplate=f"{name}, {set_name}<br>EER {eer * 100:.2f}%<extra></extra>"),
                          row=r, col=c)
    _probit_layout(fig, rows, cols, len(sets))
    fig.update_layout(title={"text": f"{title}<br><sup>models: {models_shown(inputs, list(per_model))}; "
                             "circle: the EER (miss = false alarm)</sup>"}, legend_title="model", margin={"t": 110})
    return fig


def fig_det_by_attack(inputs: ReportInputs, requested: bool, max_points: int, *, title: str) -> go.Figure:
    """The first evaluated model's DET curve per attack (its spoofs against all bona fide trials),
    one panel per set, the pooled curve in black; drawn on request (`dpda report --det-by-attack`)."""
    if not requested:
        return empty_figure(title, "per-attack DET curves are drawn on request: dpda report --det-by-attack")
    first = _first_scored(inputs)
    if first is None:
        return empty_figure(title, "no score and key files in the evaluated models' eval folders")
    run_id, trial_id = first
    scored_sets = _scored_sets(inputs, run_id, trial_id)
    sets = [s for s, v in scored_sets.items() if "attack" in v]
    if not sets:
        return empty_figure(title, "the evaluated sets' keys have no attack column")
    rows, cols = _grid(sets)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=sets, horizontal_spacing=0.07)
    palette = [c for c in ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
                           "#2ca02c", "#d62728")]
    for i, set_name in enumerate(sets):
        r, c = i // cols + 1, i % cols + 1
        scored = scored_sets[set_name]
        fig.add_trace(_det_trace(scored, f"{set_name}: pooled", "#000", max_points, width=2.5), row=r, col=c)
        bona = scored[scored["bonafide"]]
        attacks = sorted(a for a in scored.loc[~scored["bonafide"], "attack"].unique())
        for j, attack in enumerate(attacks):
            part = pd.concat([bona, scored[~scored["bonafide"] & (scored["attack"] == attack)]])
            fig.add_trace(_det_trace(part, f"{set_name}: {attack}", palette[j % len(palette)], max_points,
                                     width=1.2), row=r, col=c)
    _probit_layout(fig, rows, cols, len(sets))
    fig.update_layout(title={"text": f"{title}<br><sup>model: {inputs.label(run_id, trial_id)}; each attack's "
                             "spoofs against all bona fide trials</sup>"}, legend_title="attack", margin={"t": 110})
    return fig


def fig_score_histograms(inputs: ReportInputs, bins: int, *, title: str) -> go.Figure:
    """The first evaluated model's scores per class, one panel per set, on shared bins (fraction of
    each class per bin), with the EER threshold and, for calibrated LLR scores, the Bayes threshold
    of the ASVspoof 5 operating point (metrics.csv's `threshold`, `bayes_threshold`)."""
    first = _first_scored(inputs)
    if first is None:
        return empty_figure(title, "no score and key files in the evaluated models' eval folders")
    run_id, trial_id = first
    scored_sets = _scored_sets(inputs, run_id, trial_id)
    sets = list(scored_sets)
    rows, cols = _grid(sets)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=sets, horizontal_spacing=0.07)
    for i, set_name in enumerate(sets):
        r, c = i // cols + 1, i % cols + 1
        scored = scored_sets[set_name]
        scores = scored["score"].to_numpy(float)
        edges = np.histogram_bin_edges(scores, bins=bins)
        for cls, mask in (("bona fide", scored["bonafide"].to_numpy()), ("spoof", ~scored["bonafide"].to_numpy())):
            counts, _ = np.histogram(scores[mask], bins=edges)
            fig.add_trace(go.Bar(
                x=(edges[:-1] + edges[1:]) / 2, y=counts / mask.sum(), width=np.diff(edges), name=cls,
                legendgroup=cls, showlegend=i == 0, opacity=0.55, marker={"color": CLASS_COLORS[cls]},
                customdata=counts, hovertemplate=f"{set_name}, {cls}<br>score %{{x:.3g}}<br>%{{y:.3f}} of the class "
                "(%{customdata})<extra></extra>"), row=r, col=c)
        row = _set_row(inputs, run_id, trial_id, set_name)
        if pd.notna(row["threshold"]):
            fig.add_vline(x=float(row["threshold"]), line_dash="dash", line_color="#333", row=r, col=c,
                          annotation_text=f"EER threshold {float(row['threshold']):.3g}",
                          annotation_position="top left", annotation_font_size=10)
        if bool(row["calibrated"]) and pd.notna(row["bayes_threshold"]):
            fig.add_vline(x=float(row["bayes_threshold"]), line_dash="dot", line_color="#1f3fbf", row=r, col=c,
                          annotation_text=f"Bayes threshold {float(row['bayes_threshold']):.3g} (LLR)",
                          annotation_position="top right", annotation_font_size=10)
        fig.update_xaxes(title_text="score (higher: more bona fide)", row=r, col=c)
        fig.update_yaxes(title_text="fraction of the class" if c == 1 else None, row=r, col=c)
    calibrated = bool(inputs.tests.loc[(inputs.tests["run_id"] == run_id) & (inputs.tests["trial_id"] == trial_id)
                                       & (inputs.tests["factor"] == "all"), "calibrated"].fillna(False).any())
    scale = ("calibrated LLRs: dotted, the Bayes threshold of the ASVspoof 5 operating point" if calibrated else
             "scores not calibrated (no Bayes threshold: actDCF reads them as LLRs all the same)")
    fig.update_layout(title={"text": f"{title}<br><sup>model: {inputs.label(run_id, trial_id)}; dashed: the EER "
                             f"threshold; {scale}</sup>"}, barmode="overlay", legend_title="class",
                      height=int(330 * rows + 170), margin={"t": 110})
    return fig
