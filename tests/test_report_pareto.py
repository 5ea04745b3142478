"""The report's Pareto-front view of a search with several objectives: it shows the trials of
pareto.csv (read, not recomputed), every completed trial, and only for such a search."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dpda_analysis.layout import PARETO_FRONT, SEARCH_RESULTS, SEARCH_SPACE_FILE
from dpda_analysis.pareto import read_search_front
from dpda_analysis.report import build_figures, write_report
from dpda_analysis.store import Telemetry
from synthetic_telemetry import write_synthetic_experiment

OBJECTIVES = ["model_dev_eer", "model_dev_cllr", "model_dev_min_dcf"]


def _non_dominated(values: np.ndarray) -> np.ndarray:
    """Brute force, minimising every column: row i is on the front unless some row j is <= on all
    and < on one."""
    keep = []
    for i, v in enumerate(values):
        keep.append(not any((w <= v).all() and (w < v).any() for j, w in enumerate(values) if j != i))
    return np.array(keep)


def _search(root: Path, objectives: list[str]) -> tuple[Path, pd.DataFrame]:
    trials = write_synthetic_experiment(root, trials=6, steps=60, layers=2, steps_per_epoch=20, stopped_trials=1, seed=4)
    exp = root / "synthetic_exp"
    snapshot = json.loads((exp / SEARCH_SPACE_FILE).read_text())
    (exp / SEARCH_SPACE_FILE).write_text(json.dumps({**snapshot, "metric": objectives, "mode": "min"}))
    rng = np.random.default_rng(7)
    ids = [t.trial_id for t in trials]
    results = pd.DataFrame({"trial_id": ids, "status": ["completed"] * (len(ids) - 1) + ["stopped early"],
                            **{k: rng.uniform(0.05, 0.5, len(ids)) for k in OBJECTIVES}})
    results.to_csv(exp / SEARCH_RESULTS, index=False)
    done = results[results["status"] == "completed"]
    front = done[_non_dominated(done[objectives].to_numpy())]
    front.to_csv(exp / PARETO_FRONT, index=False)
    return exp, front


@pytest.mark.parametrize("objectives", [OBJECTIVES[:2], OBJECTIVES])
def test_the_front_view_draws_pareto_csv_and_every_completed_trial(tmp_path: Path, objectives: list[str]) -> None:
    exp, front = _search(tmp_path, objectives)
    with Telemetry(exp) as tel:
        read = read_search_front(tel.path, tel.location)
        figures = build_figures(tel, heatmap_trials=1)
    assert read is not None and read.objectives == objectives and len(read.trials) == 5  # the stopped one has no model
    fig = figures["pareto_front"]
    marked = [t for t in fig.data if t.hovertemplate and "on the front" in t.hovertemplate]
    assert sorted(str(t.text[0]) for t in marked) == sorted(front["trial_id"].astype(str))
    line = next(t for t in fig.data if t.name == "Pareto front")
    assert list(line.x) == sorted(front[objectives[0]])  # joined in the order of the first objective
    grey = next(t for t in fig.data if t.name == "dominated")
    assert len(grey.x) + len(marked) == 5
    assert ("drawn on the first two" in fig.layout.title.text) == (len(objectives) > 2)


def test_no_front_view_for_one_objective_and_the_page_draws_it(tmp_path: Path) -> None:
    exp, _ = _search(tmp_path / "one", OBJECTIVES[:1])
    with Telemetry(exp) as tel:
        assert read_search_front(tel.path, tel.location) is None
        assert "pareto_front" not in build_figures(tel, heatmap_trials=1)
    exp, _ = _search(tmp_path / "two", OBJECTIVES[:2])
    result = write_report(exp, tmp_path / "r.html")
    assert "pareto_front" in result.figures
    assert 'id="fig-pareto_front"' in (tmp_path / "r.html").read_text(encoding="utf-8")
