"""`dpda tune search_spaces/demo.yaml` end to end on 2 cores, scaled down with its options:
Optuna proposes the trials (conditionals respected), ASHA stops some, an interrupted search
finishes with --resume without rerunning finished trials, and the results land on disk.

One local Ray instance for the module (2 CPUs). Trials run one at a time so the seeded TPE
proposals and the ASHA decisions do not depend on timing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dpda.cli import command_parser, main
from dpda.commands import tune as tune_command
from dpda.train.config import config_from_dict

from support import write_tiny_corpus

ROOT = Path(__file__).parents[1]
NUM_SAMPLES = 5


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def cli_args(corpus: Path, storage: Path, *extra: str) -> list[str]:
    return [
        "tune", str(ROOT / "search_spaces/demo.yaml"), "--data", str(corpus), "--storage", str(storage),
        "--num-samples", str(NUM_SAMPLES), "--max-concurrent", "1", "--epochs", "2",
        "--set", "data.length=8000", "--set", "optim.batch_size=4", "--set", "optim.max_steps_per_epoch=4",
        "--set", "telemetry.flush_every=4", "--quiet",
        # dev loss rather than the file's dev EER: on this small dev set EERs tie (often at 0),
        # and ASHA never stops a trial that ties with the cutoff
        "--metric", "dev_loss", *extra,
    ]


class InterruptAfter:
    """A Tune callback that interrupts the search (as Ctrl-C would: Tune saves its state and
    returns) once `n` trials have finished. Tune.restore brings callbacks back, so it fires only
    while `marker` does not exist."""

    def __new__(cls, n: int, marker: Path):
        from ray.tune import Callback

        class _Interrupt(Callback):
            def __init__(self) -> None:
                self.done = 0

            def on_trial_complete(self, iteration, trials, trial, **info) -> None:
                self.done += 1
                if self.done == n and not marker.exists():
                    marker.touch()
                    os.kill(os.getpid(), signal.SIGUSR1)  # Tune's interrupt signal besides SIGINT

        return _Interrupt()


@pytest.mark.ray
def test_demo_search_asha_interrupt_and_resume(ray_local, tmp_path: Path, capsys) -> None:
    from dpda.tune.tuner import run_search

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=32, n_dev=48)
    storage = tmp_path / "results"
    parser = command_parser("tune")
    space = tune_command.load_space(parser.parse_args(cli_args(corpus, storage)[1:]))
    # ASHA keeps the top quarter at each rung (the file says half) from epoch 1 (the file says 2,
    # which --epochs 2 leaves no room to stop before): with 5 trials, stopping then
    # does not hinge on the order in which good and bad trials arrive. Restored on --resume.
    space = dataclasses.replace(space, tune=space.tune.with_changes(reduction_factor=4.0, grace_period=1))

    # ---- first run, interrupted after two finished trials
    first = run_search(space, storage=storage, callbacks=[InterruptAfter(2, tmp_path / "interrupted")], verbose=0)
    assert first.interrupted
    exp = storage / "demo"
    finished = {
        row.trial_id: (exp / f"trial_{row.trial_id}" / "result.json").read_bytes()
        for row in first.table.itertuples() if row.status in ("completed", "stopped early")
    }
    assert len(finished) >= 2

    # ---- a second start without --resume refuses to clobber the experiment
    capsys.readouterr()
    assert main(cli_args(corpus, storage)) == 2
    assert "--resume" in capsys.readouterr().err

    # ---- --resume finishes the search; finished trials are not run again
    assert main(cli_args(corpus, storage, "--resume")) == 0
    out = capsys.readouterr().out
    assert "Best trial" in out and "best_config.yaml" in out
    for trial_id, before in finished.items():
        assert (exp / f"trial_{trial_id}" / "result.json").read_bytes() == before, trial_id

    table = pd.read_csv(exp / "results.csv")
    assert len(table) == NUM_SAMPLES and table["trial_id"].is_unique
    assert set(table["status"]) <= {"completed", "stopped early"}, table
    # ASHA (grace period 1 epoch) stopped at least one trial after epoch 1
    stopped = table[table["status"] == "stopped early"]
    assert len(stopped) >= 1 and (stopped["epochs"] == 1).all(), table
    completed = table[table["status"] == "completed"]
    assert len(completed) >= 1 and (completed["epochs"] == 2).all()
    for trial_id in completed["trial_id"]:
        assert (exp / f"trial_{trial_id}" / "model.pt").exists()

    # Optuna's proposals: distinct, inside the ranges, conditionals only when active
    assert table["optim.lr"].nunique() == NUM_SAMPLES
    assert table["optim.lr"].between(1e-3, 5e-3).all()  # the demo space's loguniform range
    for row in table.to_dict("records"):
        assert (row["align.rule"] == "gradvac") == _present(row["align.options.beta"])
        assert (row["align.rule"] == "cagrad") == _present(row["align.options.c"])
        ssi = row["augment.rawboost.algo"] in (3, 4)
        assert ssi == _present(row["augment.rawboost.SNRmin"])
        if ssi:
            assert row["augment.rawboost.SNRmin"] <= row["augment.rawboost.SNRmax"]

    # the best config is a complete, valid training config
    best = yaml.safe_load((exp / "best_config.yaml").read_text())
    cfg = config_from_dict(best)
    assert cfg.optim.epochs == 2 and cfg.data.length == 8000
    best_id = (exp / "best_config.yaml").read_text().split("Best trial of ", 1)[1].split(":")[1].split(",")[0].strip()
    best_row = table.set_index("trial_id").loc[best_id]
    assert math.isclose(cfg.optim.lr, best_row["optim.lr"], rel_tol=1e-9)
    # the best trial is the completed one whose saved model has the lowest dev loss (--metric dev_loss)
    assert best_row["status"] == "completed"
    assert best_row["model_dev_loss"] == table[table["status"] == "completed"]["model_dev_loss"].min()

    # TensorBoard event files per trial; telemetry per trial, readable by dpda_analysis
    assert list(exp.glob("trial_*/events.out.tfevents.*"))
    from dpda_analysis.store import open_telemetry

    with open_telemetry(exp) as tel:
        steps = tel.sql("select trial_id, count(*) as n, count(distinct step) as d from steps group by trial_id")
    assert len(steps) == NUM_SAMPLES and (steps["n"] == steps["d"]).all()

    # the Optuna study is a file optuna (and optuna-dashboard) opens, across the interruption
    import optuna

    from dpda.tune.study_files import HPARAMS_DIR, study_url

    study = optuna.load_study(study_name="demo", storage=study_url(str(exp)))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]  # ASHA's stops
    assert len(done) == len(completed) and len(pruned) == len(stopped) and all(math.isfinite(t.value) for t in done)
    assert sorted(t.params["optim.lr"] for t in done + pruned) == sorted(table["optim.lr"])
    # one TensorBoard HParams session per trial
    assert len(list((exp / HPARAMS_DIR).glob("trial_*/events.out.tfevents.*"))) == NUM_SAMPLES


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def test_hparams_declare_the_space_once_and_a_session_per_trial(tmp_path: Path) -> None:
    """What the HParams callback writes: the experiment (every searched key with its domain,
    the status column, the metrics) once, and for a trial with inactive conditional parameters a
    session with its values under their config keys, its status and the metrics; TensorBoard's
    reader finds them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    from dpda.tune.study_files import hparam_metrics, trial_hparams, write_experiment, write_hparams

    space = tune_command.load_space(command_parser("tune").parse_args(
        [str(ROOT / "search_spaces/demo.yaml"), "--data", str(tmp_path)]))
    root = write_experiment(str(tmp_path), space)
    assert write_experiment(str(tmp_path), space) == root and len(list(root.glob("events.*"))) == 1  # once
    acc = EventAccumulator(str(root))
    acc.Reload()
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/experiment"]).experiment
    infos = {h.name: h for h in experiment.hparam_infos}
    assert list(infos) == [p.key for p in space.params] + ["status"]
    assert list(infos["align.rule"].domain_discrete) == ["none", "pcgrad", "gradvac", "cagrad", "mgda"]
    assert (infos["optim.lr"].domain_interval.min_value, infos["optim.lr"].domain_interval.max_value) == (2e-3, 5e-3)
    # an offset key's range: its partner's range plus the width's (SNRmin 5..20, width 5..25)
    snr = infos["augment.rawboost.SNRmax"].domain_interval
    assert (snr.min_value, snr.max_value) == (10, 45)
    assert {m.name.tag for m in experiment.metric_infos} == {f"final/{k}" for k in hparam_metrics(space)}

    config = {p.key: None for p in space.params} | {"optim.lr": 2e-3, "align.rule": "pcgrad"}
    hp = trial_hparams(space, config)
    assert hp == {"optim.lr": 2e-3, "align.rule": "pcgrad"}  # inactive (None) keys left out
    logdir = write_hparams(str(tmp_path), "abc", hp, {"model_dev_eer": 0.25, "epoch": 2,
                                                       "conflict_fraction_last_epoch": float("nan")},
                           "stopped early", hparam_metrics(space))
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    assert values["optim.lr"].number_value == pytest.approx(2e-3) and values["align.rule"].string_value == "pcgrad"
    assert values["status"].string_value == "stopped early"
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    assert end.session_end_info.status == api_pb2.STATUS_UNKNOWN  # TensorBoard has no "stopped"; the column says it
    assert "_hparams_/experiment" not in content  # declared once, at the root
    assert acc.Scalars("final/model_dev_eer")[0].value == pytest.approx(0.25)
    assert "final/conflict_fraction_last_epoch" not in acc.Tags()["scalars"]  # NaN: no value
