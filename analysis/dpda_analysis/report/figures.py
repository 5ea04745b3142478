"""The report's figures as one table: each entry is a figure's name, title and maker, in page order.

Adding a figure is one entry here plus its drawing function beside those of its kind
(`epochs`, `rules`, `paths`, `layers`, `trials`, `evaluated`); `FIGURE_ORDER`, the titles and
`build_figures` are all read from this table. A figure with a `when` is drawn only where it holds
(the path matrix: when some trial has three paths or more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import plotly.graph_objects as go

from dpda_analysis import pathmatrix, queries
from dpda_analysis.report import confounds, epochs, evaluated, layers, pareto, paths, rules, trials
from dpda_analysis.report.inputs import ReportInputs, report_inputs
from dpda_analysis.store import Telemetry


@dataclass(frozen=True)
class FigureContext:
    """What every maker gets: the telemetry, the inputs shared with the page, the drawing options."""

    tel: Telemetry
    inputs: ReportInputs
    heatmap_bins: int = 60
    heatmap_trials: int = 8
    hist_bins: int = 40
    det_models: int = 4  # DET curves of at most this many evaluated models
    det_by_attack: bool = False  # the per-attack DET view (many curves per panel: on request)
    det_points: int = 1500  # cut points kept per curve (a 10^6-trial set has 10^6)


@dataclass(frozen=True)
class Figure:
    """One figure of the report: `make(context, title)` draws it under its `title`; with `when`,
    only where `when(context)` holds (else the page has no such section). `compares_rules`: the
    figure sets rules side by side, so it carries the trials' confounds (`confounds.annotate`)."""

    name: str
    title: str
    make: Callable[[FigureContext, str], go.Figure]
    when: Callable[[FigureContext], bool] | None = None
    compares_rules: bool = False


MANY_PATHS = 3
"""The path figures are drawn when some trial has at least this many paths (a dual-path run's
matrix is its whole-model conflict fraction, already drawn per epoch)."""


FIGURES: tuple[Figure, ...] = (
    Figure(
        "conflict_by_epoch",
        "Conflict fraction per epoch (whole-model cos(g_orig, g_aug) < 0), 95% interval over steps",
        lambda ctx, title: epochs.fig_conflict_by_epoch(queries.conflict_by_epoch(ctx.tel), ctx.inputs, title=title),
    ),
    Figure(
        "dev_eer_by_epoch",
        "Dev EER per epoch",
        lambda ctx, title: epochs.fig_dev_eer_by_epoch(queries.epoch_metrics(ctx.tel), ctx.inputs, title=title),
    ),
    Figure(
        "conflict_by_rule_algo",
        "Conflict fraction by alignment rule and RawBoost algorithm: pooled steps (Wilson 95% interval) and each trial",
        lambda ctx, title: rules.fig_conflict_by_rule_algo(
            queries.conflict_by(ctx.tel, ["variant", "rawboost_algo"]), queries.conflict_by_trial(ctx.tel), ctx.inputs,
            title=title),
        compares_rules=True,
    ),
    Figure(
        "conflict_by_transform",
        "Conflict fraction per transform and per combination of transforms, 95% interval over steps",
        lambda ctx, title: rules.fig_conflict_by_transform(
            queries.conflict_by_transform(ctx.tel), queries.conflict_by_combination(ctx.tel), ctx.inputs.colors,
            title=title),
        compares_rules=True,
    ),
    Figure(
        "path_matrix",
        "Conflict matrix between paths (cos(g_i, g_j) < 0 on non-skipped steps), per third of the run",
        lambda ctx, title: paths.fig_path_matrix(
            pathmatrix.pair_conflicts(ctx.tel, per="range", ranges=3), ctx.inputs.multi_run, title=title),
        when=lambda ctx: ctx.inputs.max_paths >= MANY_PATHS,
    ),
    Figure(
        "path_pairs_ranked",
        "Path pairs ranked by conflict fraction (whole run), 95% interval over steps",
        lambda ctx, title: paths.fig_path_pairs_ranked(
            pathmatrix.most_conflicting_pairs(ctx.tel), ctx.inputs.multi_run, title=title),
        when=lambda ctx: ctx.inputs.max_paths >= MANY_PATHS,
    ),
    Figure(
        "layer_heatmap",
        "Per-layer mean cosine over training (parameter tensors x step bins, grouped by module)",
        lambda ctx, title: layers.fig_layer_heatmap(
            ctx.tel, ctx.inputs.order, ctx.heatmap_bins, ctx.heatmap_trials, ctx.inputs.multi_run, title=title),
    ),
    Figure(
        "layer_conflict",
        "Per-layer conflict fraction per rule, by module",
        lambda ctx, title: layers.fig_layer_conflict(queries.conflict_by_module_and_rule(ctx.tel), title=title),
        compares_rules=True,
    ),
    Figure(
        "cosine_histogram",
        "Distribution of cos(g_orig, g_aug) per rule",
        lambda ctx, title: rules.fig_cosine_histogram(
            queries.cosine_histogram(ctx.tel, by="variant", bins=ctx.hist_bins), ctx.inputs.colors, title=title),
        compares_rules=True,
    ),
    Figure(
        "eer_vs_conflict",
        "Best dev EER and epochs-to-best against conflict fraction (one point per trial)",
        lambda ctx, title: trials.fig_eer_vs_conflict(queries.eer_vs_conflict(ctx.tel), ctx.inputs, title=title),
        compares_rules=True,
    ),
    Figure(
        "search_parcoords",
        "Search: searched parameters against dev EER",
        lambda ctx, title: trials.fig_search_parcoords(ctx.inputs.table, ctx.inputs.space, title=title),
    ),
    Figure(
        "pareto_front",
        "Search with several objectives: the Pareto front of the completed trials (pareto.csv)",
        lambda ctx, title: pareto.fig_pareto_front(ctx.inputs.front, ctx.inputs, title=title),
        when=lambda ctx: ctx.inputs.front is not None,
    ),
    Figure(
        "test_eer",
        "Test-set EER of every evaluated model, with 95% bootstrap intervals",
        lambda ctx, title: evaluated.fig_test_eer(ctx.inputs, title=title),
    ),
    Figure(
        "test_eer_by_attack",
        "Test-set EER per attack, with 95% bootstrap intervals",
        lambda ctx, title: evaluated.fig_test_eer_by(ctx.inputs, "attack", title=title),
    ),
    Figure(
        "test_eer_by_condition",
        "Test-set EER per condition (codec, transmission, ...), with 95% bootstrap intervals",
        lambda ctx, title: evaluated.fig_test_eer_by(ctx.inputs, "condition", title=title),
    ),
    Figure(
        "det_curves",
        "DET curves per test set (probit axes)",
        lambda ctx, title: evaluated.fig_det_curves(ctx.inputs, ctx.det_models, ctx.det_points, title=title),
    ),
    Figure(
        "det_by_attack",
        "DET curves per attack (probit axes)",
        lambda ctx, title: evaluated.fig_det_by_attack(ctx.inputs, ctx.det_by_attack, ctx.det_points, title=title),
    ),
    Figure(
        "score_histograms",
        "Score distribution per class, with the decision thresholds",
        lambda ctx, title: evaluated.fig_score_histograms(ctx.inputs, ctx.hist_bins, title=title),
    ),
)
FIGURE_ORDER: tuple[str, ...] = tuple(figure.name for figure in FIGURES)
EVALUATION_FIGURE = "evaluation"  # from an eval folder (`evaluation.fig_evaluation`), after FIGURE_ORDER


def build_figures(tel: Telemetry, *, heatmap_bins: int = 60, heatmap_trials: int = 8,
                  hist_bins: int = 40, on_figure: Callable[[str], None] | None = None,
                  inputs: ReportInputs | None = None, det_by_attack: bool = False) -> dict[str, go.Figure]:
    """All report figures, keyed as in `FIGURE_ORDER` (less those whose `when` does not hold; an
    empty one carries why, `common.is_omitted`, and the page leaves it out); `on_figure(name)` is
    called as each one is done or passed over (progress for large experiments, where each is a
    query over the telemetry; the count stays `len(FIGURE_ORDER)`)."""
    ctx = FigureContext(tel, inputs or report_inputs(tel), heatmap_bins, heatmap_trials, hist_bins,
                        det_by_attack=det_by_attack)
    notes = confounds.confound_notes(ctx.inputs.table, ctx.inputs.space)
    figures = {}
    for figure in FIGURES:
        if figure.when is None or figure.when(ctx):
            figures[figure.name] = figure.make(ctx, figure.title)
            if figure.compares_rules:
                confounds.annotate(figures[figure.name], notes)
        if on_figure is not None:
            on_figure(figure.name)
    return figures
