"""One answer per search: Tune, Optuna, results.csv, best_config.yaml, the report's headline and
TensorBoard's HParams name the same best trial with the same value (the dev metric of the model
it saved, dpda.train.trial_result); ASHA's stopped trials are PRUNED in Optuna; HParams declare
every searched key. And a search with two objectives writes the Pareto front Optuna finds.

One local Ray instance for the module (2 CPUs); trials one at a time, so the seeded TPE proposals
and ASHA's decisions do not depend on timing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from dpda.cli import command_parser
from dpda.commands import tune as tune_command

from support import write_tiny_corpus

pytestmark = pytest.mark.ray
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def search_space(corpus: Path, storage: Path, *extra: str):
    args = command_parser("tune").parse_args([
        str(ROOT / "search_spaces/demo.yaml"), "--data", str(corpus), "--storage", str(storage),
        "--max-concurrent", "1", "--set", "data.length=4000", "--set", "optim.batch_size=4",
        "--set", "optim.max_steps_per_epoch=4", "--set", "telemetry.flush_every=4", *extra])
    return tune_command.load_space(args)


def hparams_sessions(exp: Path) -> dict[str, dict]:
    """trial id -> {'hparams': ..., 'status': ..., scalars...} from EXPERIMENT/hparams, read by
    TensorBoard's own event reader; and the declared experiment."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out = {}
    for folder in sorted((exp / "hparams").glob("trial_*")):
        acc = EventAccumulator(str(folder), size_guidance={"tensors": 0, "scalars": 0})
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        values = {k: v.string_value or v.number_value for k, v in start.session_start_info.hparams.items()}
        scalars = {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}
        out[folder.name.removeprefix("trial_")] = {"hparams": values, **scalars}
    return out


def declared_hparams(exp: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(exp / "hparams"))
    acc.Reload()
    data = plugin_data_pb2.HParamsPluginData.FromString(acc.PluginTagToContent("hparams")["_hparams_/experiment"])
    return {h.name for h in data.experiment.hparam_infos}


def test_four_trial_search_with_asha_stops_names_one_best_trial(ray_local, tmp_path: Path) -> None:
    from ray import tune

    from dpda.train.trial_result import saved
    from dpda.tune.resume import TUNE_TRIAL_ATTR
    from dpda.tune.study_files import study_url
    from dpda.tune.tuner import run_search
    from dpda_analysis import open_telemetry
    from dpda_analysis.queries import summary as report_summary

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=32, n_dev=160, seconds=0.25)
    storage = tmp_path / "results"
    space = search_space(corpus, storage, "--num-samples", "4", "--epochs", "2")
    # ASHA keeps the top quarter at epoch 1 (the file: half, from epoch 2): trials stop early
    space = dataclasses.replace(space, tune=space.tune.with_changes(reduction_factor=4.0, grace_period=1))
    key = space.tune.key
    assert key == "model_dev_eer"
    outcome = run_search(space, storage=storage, verbose=0)
    exp = storage / "demo"
    assert not outcome.interrupted and outcome.failed == 0
    best_id, best_value = outcome.best_trial_id, outcome.best_metric

    table = pd.read_csv(exp / "results.csv", dtype={"trial_id": str})
    assert len(table) == 4 and set(table["status"]) == {"completed", "stopped early"}, table
    stopped = set(table.loc[table["status"] == "stopped early", "trial_id"])
    completed = table[table["status"] == "completed"]
    assert stopped and len(completed) >= 2, table
    # results.csv: the best row first, the completed trial with the lowest saved-model dev EER
    assert table["trial_id"].iloc[0] == best_id and table[key].iloc[0] == pytest.approx(best_value, abs=0)
    assert best_value == completed[key].min()
    # the conflict fraction of the whole trial is the report's; the last epoch's has its own name
    assert {"conflict_fraction", "conflict_fraction_last_epoch"} <= set(table.columns)

    # Tune's results: the completed trials' last reports carry the saved model's value; the best is the same
    finals = {t.trial_id: t.last_result[key] for t in tune.ExperimentAnalysis(str(exp)).trials if saved(t.last_result)}
    assert set(finals) == set(completed["trial_id"])
    assert min(finals, key=finals.get) == best_id and finals[best_id] == best_value

    # Optuna: the same best trial and value; ASHA's stopped trials PRUNED; values stored as used
    study = optuna.load_study(study_name="demo", storage=study_url(str(exp)))
    by_id = {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in study.trials}
    assert set(by_id) == set(table["trial_id"])
    assert study.best_trial.user_attrs[TUNE_TRIAL_ATTR] == best_id and study.best_trial.value == best_value
    for trial_id, trial in by_id.items():
        state = optuna.trial.TrialState.PRUNED if trial_id in stopped else optuna.trial.TrialState.COMPLETE
        assert trial.state == state, (trial_id, trial.state)
        assert not [k for k in trial.params if ":" in k]
        row = table.set_index("trial_id").loc[trial_id]
        for name, value in trial.params.items():
            assert value == row[name] or value == pytest.approx(row[name]), name

    # best_config.yaml: the same trial and value, the trial's config
    text = (exp / "best_config.yaml").read_text()
    assert f"Best trial of {exp}: {best_id}, {key} {best_value:.6g}" in text
    assert yaml.safe_load(text)["optim"]["lr"] == pytest.approx(table.set_index("trial_id").loc[best_id, "optim.lr"])

    # the report's headline: the trial whose summary.json (saved model) has the lowest dev EER
    with open_telemetry(exp) as tel:
        headline = report_summary(tel)
    assert headline["best_trial"].endswith("/" + best_id) and headline["model_dev_eer"] == best_value
    model = json.loads((exp / f"trial_{best_id}" / "summary.json").read_text())
    assert model["final_dev_eer"] == best_value and model["model"] == "model.pt"  # a path that lasts

    # TensorBoard HParams: one session per trial, the whole space declared, the same best
    sessions = hparams_sessions(exp)
    assert set(sessions) == set(table["trial_id"])
    assert declared_hparams(exp) >= {p.key for p in space.params}
    assert {s["hparams"]["status"] for i, s in sessions.items() if i in stopped} == {"stopped early"}
    done = {i: s[f"final/{key}"] for i, s in sessions.items() if s["hparams"]["status"] == "completed"}
    assert min(done, key=done.get) == best_id and done[best_id] == pytest.approx(best_value, rel=1e-6)
    # Ray's own TensorBoard files hold scalars only: no second HParams session per trial
    for events in exp.glob("trial_*/events.out.tfevents.*"):
        assert b"_hparams_/session_start_info" not in events.read_bytes(), events


def test_two_objectives_write_the_pareto_front(ray_local, tmp_path: Path) -> None:
    from dpda.tune.resume import TUNE_TRIAL_ATTR
    from dpda.tune.study_files import study_url
    from dpda.tune.tuner import run_search

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=32, n_dev=160, seconds=0.25)
    storage = tmp_path / "results"
    space = search_space(corpus, storage, "--num-samples", "3", "--epochs", "1")
    space = dataclasses.replace(space, tune=space.tune.with_changes(
        metric=None, objectives=[{"metric": "eer"}, {"metric": "cllr"}]))
    outcome = run_search(space, storage=storage, verbose=0)
    exp = storage / "demo"
    table = pd.read_csv(exp / "results.csv", dtype={"trial_id": str})
    assert (table["status"] == "completed").all(), table
    pareto = pd.read_csv(exp / "pareto.csv", dtype={"trial_id": str})
    study = optuna.load_study(study_name="demo", storage=study_url(str(exp)))
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE] * 2
    assert set(pareto["trial_id"]) == {t.user_attrs[TUNE_TRIAL_ATTR] for t in study.best_trials}
    # best_config.yaml holds the first objective's best, and says that the front is elsewhere
    first = table.loc[table["model_dev_eer"].idxmin()]
    assert outcome.best_trial_id == first["trial_id"] and math.isclose(outcome.best_metric, first["model_dev_eer"])
    assert "pareto.csv" in (exp / "best_config.yaml").read_text()
