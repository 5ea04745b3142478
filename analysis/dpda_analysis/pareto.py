"""A multi-objective search's answer as `dpda tune` left it: the objectives (from the search-space
snapshot), every trial's values (results.csv) and the Pareto front (pareto.csv).

Read, never recomputed: the front is defined once, where the search writes it
(`dpda.tune.tuner.pareto_front`), so the report shows the same trials as the file users keep."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandas as pd

from dpda_analysis.evaluation import COMPLETED, read_csv, read_json
from dpda_analysis.layout import PARETO_FRONT, SEARCH_RESULTS, SEARCH_SPACE_FILE
from dpda_analysis.location import Location


@dataclass(frozen=True)
class SearchFront:
    """`objectives`: the reported keys searched together (`model_dev_eer`, `model_dev_cllr`), in
    the search's order; `mode`: min or max for all of them; `trials`: the completed trials with
    finite values on every objective; `front`: the trials of pareto.csv."""

    objectives: list[str]
    mode: str
    trials: pd.DataFrame
    front: pd.DataFrame


def read_search_front(root: str | os.PathLike, loc: Location) -> SearchFront | None:
    """The search's front when `root` holds a search with two or more objectives and its
    pareto.csv; None otherwise (one objective, a study, a plain run, a search still running)."""
    folder = loc.path(os.fspath(root))
    snapshot = read_json(loc, folder / SEARCH_SPACE_FILE)
    metric = snapshot.get("metric") if isinstance(snapshot, dict) else None
    if not isinstance(metric, list) or len(metric) < 2 or not all(isinstance(m, str) for m in metric):
        return None
    # ids as written: a Tune id of digits only ("00003", "12345678") must not become a number
    results, front = (read_csv(loc, folder / name, dtype={"trial_id": str}) for name in (SEARCH_RESULTS, PARETO_FRONT))
    if results is None or front is None or not set(metric) <= set(results.columns) & set(front.columns):
        return None
    done = results[results["status"] == COMPLETED].dropna(subset=metric)
    return SearchFront(list(metric), str(snapshot.get("mode", "min")), done.reset_index(drop=True),
                       front.reset_index(drop=True))
