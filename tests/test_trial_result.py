"""A trial's result, defined once (dpda.train.trial_result), and how the search tells Optuna and
picks its answer from it: no Ray instance needed."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest

from dpda.train.trial_result import EPOCH_CONFLICT, MODEL_SAVED, epoch_report, final_report, saved
from dpda.tune.search_space import parse_search_space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = {"base": {"data": {"dev": ["x"]}, "optim": {"epochs": 3}}, "search": {"optim.lr": {"uniform": [0.1, 0.2]}}}


def space(**tune):
    return parse_search_space({**SPACE, "tune": tune}, validate_config=lambda d, s: d)


def test_each_epoch_reports_the_best_checkpoints_dev_metrics_and_the_end_the_saved_models() -> None:
    # three epochs selected by dev loss: the second is best so far after epochs 2 and 3
    history = [{"epoch": 0, "dev_loss": 0.9, "dev_eer": 0.20}, {"epoch": 1, "dev_loss": 0.5, "dev_eer": 0.30},
               {"epoch": 2, "dev_loss": 0.7, "dev_eer": 0.10}]
    best = sorted((h["dev_loss"], h["epoch"]) for h in history)
    report = epoch_report({"epoch": 3, "dev_eer": 0.10, "conflict_fraction": 0.4}, history, best)
    # the running result is the selected checkpoint's, not the lowest EER of any epoch (0.10)
    assert report["model_dev_eer"] == 0.30 and report["model_dev_loss"] == 0.5 and report["selected_epoch"] == 2
    assert math.isnan(report["model_dev_cllr"])  # not scored in this history
    assert report[EPOCH_CONFLICT] == 0.4 and "conflict_fraction" not in report  # one epoch's, named so
    assert not saved(report)
    final = final_report(report, {"epochs": 3, "final_dev_eer": 0.25, "final_dev_loss": 0.6, "final_dev_cllr": 0.9})
    assert saved(final) and final[MODEL_SAVED] == 1
    assert (final["model_dev_eer"], final["model_dev_loss"], final["model_dev_cllr"]) == (0.25, 0.6, 0.9)
    assert final["epoch"] == 3 and final[EPOCH_CONFLICT] == 0.4


@pytest.mark.parametrize("objectives", [None, [{"metric": "eer"}, {"metric": "min_dcf"}]])
def test_optuna_is_told_complete_pruned_or_fail_by_whether_the_trial_saved_its_model(objectives) -> None:
    from dpda.tune.resume import TUNE_TRIAL_ATTR, ReconciledOptunaSearch

    settings = space(objectives=objectives) if objectives else space(metric="dev_eer")
    keys = [g.key for g in settings.tune.goals]
    searcher = ReconciledOptunaSearch(space=settings, metric=keys if len(keys) > 1 else keys[0],
                                      mode=["min"] * len(keys) if len(keys) > 1 else "min")
    for trial_id in ("done", "stopped", "failed"):
        assert "optim.lr" in searcher.suggest(trial_id)
    epoch = {"epoch": 1, "training_iteration": 1, **{k: 0.3 for k in keys}}
    for trial_id in ("done", "stopped"):
        searcher.on_trial_result(trial_id, epoch)
    searcher.on_trial_complete("done", {**epoch, **{k: 0.2 for k in keys}, MODEL_SAVED: 1})
    searcher.on_trial_complete("stopped", epoch)  # ASHA stopped it: no saved model
    searcher.on_trial_complete("failed", epoch, error=True)
    trials = {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in searcher._ot_study.trials}
    State = optuna.trial.TrialState
    assert {k: t.state for k, t in trials.items()} == {"done": State.COMPLETE, "stopped": State.PRUNED,
                                                       "failed": State.FAIL}
    assert trials["done"].values == [0.2] * len(keys)


def test_pareto_front_is_optunas() -> None:
    from dpda.tune.tuner import best_row, pareto_front

    settings = space(objectives=[{"metric": "eer"}, {"metric": "cllr"}])
    rng = np.random.default_rng(0)
    values = rng.integers(0, 6, size=(40, 2)) / 10  # ties on purpose
    table = pd.DataFrame({"trial_id": [f"t{i}" for i in range(40)], "status": ["completed"] * 38 + ["stopped early"] * 2,
                          "model_dev_eer": values[:, 0], "model_dev_cllr": values[:, 1]})
    study = optuna.create_study(directions=["minimize", "minimize"])
    for row in table[table["status"] == "completed"].itertuples():
        study.add_trial(optuna.trial.create_trial(values=[row.model_dev_eer, row.model_dev_cllr],
                                                  user_attrs={"id": row.trial_id}))
    assert set(pareto_front(settings, table)["trial_id"]) == {t.user_attrs["id"] for t in study.best_trials}
    # the best trial (best_config.yaml): the first objective's best among the completed trials
    table.loc[38, "model_dev_eer"] = -1.0  # a stopped trial saved no model: never the answer
    assert best_row(settings, table)["model_dev_eer"] == table.loc[:37, "model_dev_eer"].min()


def test_each_dev_corpus_is_scored_on_its_own_and_the_last_report_is_the_saved_models(tmp_path) -> None:
    """data.dev with two corpora: each epoch reports the pooled and the per-entry metrics of the
    best checkpoint so far, and the last report the saved model.pt's, equal to `dpda eval`'s
    scoring of model.pt on each corpus and on both (what `set: dev[i]` objectives read)."""
    import json

    from support import demo_dict, write_separable_corpus

    from dpda.train.config import config_from_dict
    from dpda.train.evaluation import evaluate_sets
    from dpda.train.loop import Trainer

    (tmp_path / "corpus").mkdir()
    corpus = write_separable_corpus(tmp_path / "corpus")
    raw = demo_dict(corpus, epochs=2, max_steps_per_epoch=2)
    raw["data"]["dev"] = [f"csv:{corpus}/dev.csv", f"csv:{corpus}/eval.csv"]
    raw["data"]["eval"] = {}
    raw["telemetry"]["enabled"] = False
    reports = []
    run = tmp_path / "run"
    Trainer(config_from_dict(raw), run, progress=False, report_fn=lambda m, update: reports.append(m)).fit()
    assert [saved(r) for r in reports] == [False, False, True]
    assert all({"model_dev_eer", "model_dev0_eer", "model_dev1_cllr"} <= set(r) for r in reports)
    assert not [k for k in reports[-1] if k.startswith("model_dev") and k.endswith("_loss") and k != "model_dev_loss"]
    rows = {r["set"]: r for r in evaluate_sets(run / "model.pt", {"dev0": [raw["data"]["dev"][0]], "dev1": [raw["data"]["dev"][1]],
                                                                  "all": raw["data"]["dev"]}, tmp_path / "eval",
                                              num_workers=0, device="cpu")}
    final = reports[-1]
    assert final["model_dev_eer"] == pytest.approx(rows["all"]["eer"], abs=1e-12)
    for i in (0, 1):
        assert final[f"model_dev{i}_eer"] == pytest.approx(rows[f"dev{i}"]["eer"], abs=1e-12)
        assert final[f"model_dev{i}_min_dcf"] == pytest.approx(rows[f"dev{i}"]["min_dcf"], abs=1e-12)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_dev1_eer"] == final["model_dev1_eer"] and summary["model"] == "model.pt"
