"""What the figures and the page's tables share, each a query over the telemetry, run once per report."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dpda_analysis import pathmatrix, queries
from dpda_analysis.evaluation import STOPPED, read_search_space, read_test_eers
from dpda_analysis.report.common import rule_colors
from dpda_analysis.store import Telemetry


@dataclass
class ReportInputs:
    """The trials table, the test-set EERs, the searched space, and per trial its variant (the
    rule of a dual-path run, else its augment mode), colour and status; the most paths of any trial."""

    table: pd.DataFrame
    tests: pd.DataFrame
    space: dict[str, dict] | None
    multi_run: bool
    colors: dict[str, str]
    variant_of: dict[tuple[str, str], str]
    order: list[tuple[str, str]]
    stopped: set[tuple[str, str]]
    max_paths: int = 0


def report_inputs(tel: Telemetry) -> ReportInputs:
    table = queries.comparison_table(tel)
    variants = sorted(table["variant"].dropna().astype(str).unique())
    return ReportInputs(
        table=table,
        tests=read_test_eers(tel.trials, tel.location),
        space=read_search_space(tel.path, list(tel.trials["run_dir"]), tel.location),
        multi_run=table["run_id"].nunique() > 1,
        colors=rule_colors(variants),
        variant_of={(r, t): v for r, t, v in zip(table["run_id"], table["trial_id"], table["variant"])},
        order=[(r, t) for r, t, h in zip(table["run_id"], table["trial_id"], table["has_telemetry"]) if h],
        stopped={(r, t) for r, t, st in zip(table["run_id"], table["trial_id"], table["status"]) if st == STOPPED},
        max_paths=pathmatrix.max_paths(tel),
    )
