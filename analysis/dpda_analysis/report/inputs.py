"""What the figures and the page's tables share, each a query over the telemetry, run once per report."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from dpda_analysis import pathmatrix, queries
from dpda_analysis.evaluation import STOPPED, evaluated_folders, read_search_space, read_test_eers
from dpda_analysis.location import Location
from dpda_analysis.pareto import SearchFront, read_search_front
from dpda_analysis.report.common import rule_colors, trial_colors, trial_label
from dpda_analysis.store import Telemetry


@dataclass
class ReportInputs:
    """The trials table, the test-set metrics, the searched space, and per trial its variant (the
    rule of a dual-path run, else its augment mode), colour and status; the most paths of any trial.
    `colors` holds one colour per variant (figures that pool a rule's trials), `trial_color` one per
    trial (figures with a mark per trial: the same trial has the same colour in every figure).
    `evaluated` lists the eval folders (`evaluation.evaluated_folders`), `location` the filesystem
    the trials' run dirs are on."""

    table: pd.DataFrame
    tests: pd.DataFrame
    space: dict[str, dict] | None
    multi_run: bool
    colors: dict[str, str]
    variant_of: dict[tuple[str, str], str]
    order: list[tuple[str, str]]
    stopped: set[tuple[str, str]]
    max_paths: int = 0
    trial_color: dict[tuple[str, str], str] = field(default_factory=dict)
    evaluated: pd.DataFrame | None = None
    location: Location | None = None
    scored: dict[tuple[str, str], dict[str, pd.DataFrame]] = field(default_factory=dict)  # score files read once
    front: SearchFront | None = None  # a search with several objectives: its Pareto front (pareto.csv)

    def label(self, run_id: str, trial_id: str) -> str:
        """How every figure names a trial (`trial 00003 (pcgrad)`), or an evaluated model outside the trials."""
        variant = self.variant_of.get((run_id, trial_id))
        name = f"trial {trial_label(run_id, trial_id, self.multi_run)}"
        return f"{name} ({variant})" if variant is not None else f"model {trial_id}"

    def color(self, run_id: str, trial_id: str) -> str:
        return self.trial_color.get((run_id, trial_id), "#444")


def report_inputs(tel: Telemetry, evaluation: str | os.PathLike | None = None) -> ReportInputs:
    table = queries.comparison_table(tel)
    variants = sorted(table["variant"].dropna().astype(str).unique())
    folders = evaluated_folders(tel.trials, evaluation, tel.location)
    keys = [(r, t) for r, t in zip(table["run_id"], table["trial_id"])]
    keys += [k for k in zip(folders["run_id"], folders["trial_id"]) if k not in set(keys)]
    return ReportInputs(
        table=table,
        tests=read_test_eers(folders, tel.location),
        space=read_search_space(tel.path, list(tel.trials["run_dir"]), tel.location),
        multi_run=table["run_id"].nunique() > 1,
        colors=rule_colors(variants),
        variant_of={(r, t): v for r, t, v in zip(table["run_id"], table["trial_id"], table["variant"])},
        order=[(r, t) for r, t, h in zip(table["run_id"], table["trial_id"], table["has_telemetry"]) if h],
        stopped={(r, t) for r, t, st in zip(table["run_id"], table["trial_id"], table["status"]) if st == STOPPED},
        max_paths=pathmatrix.max_paths(tel),
        trial_color=trial_colors(sorted(keys)),
        evaluated=folders,
        location=tel.location,
        front=read_search_front(tel.path, tel.location),
    )
