"""Faults in training and scoring: each ends in one line naming the file, key or path, a non-zero
exit, and nothing lost (telemetry steps read once, checkpoints loadable, no temp files left)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from dpda.cli import main
from dpda.errors import UserError
from dpda.train import checkpoint as ckpt
from dpda.train.checkpoint import load_checkpoint, save_checkpoint
from dpda.train.config import config_from_dict
from dpda.train.loop import Trainer
from dpda.train.run_dir import RunDirLock, json_safe, write_json
from support import demo_dict, write_separable_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_separable_corpus(tmp_path_factory.mktemp("separable"))


@pytest.fixture(scope="module")
def model_run(corpus: Path, tmp_path_factory) -> Path:
    """A finished one-epoch run (its model.pt is what the scoring cases start from)."""
    run_dir = tmp_path_factory.mktemp("run")
    Trainer(config_from_dict(demo_dict(corpus, epochs=1)), run_dir, progress=False).fit()
    return run_dir


def _one_line(capsys, prefix: str) -> str:
    """The one error line (progress lines before it are fine), no traceback."""
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert "Traceback" not in err and [line for line in lines if "error:" in line] == lines[-1:], err
    assert lines[-1].startswith(prefix), err
    return lines[-1]


def _steps(run_dir: Path):
    from dpda_analysis import open_telemetry

    return open_telemetry(run_dir).sql("SELECT run_id, step, attempt FROM steps ORDER BY step")


def _no_temp_files(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".tmp" in p.name], "temporary files left behind"


# ---------------------------------------------------------------------------------------------
# a crash before the first checkpoint: the rerun supersedes, each step is read once


def test_crash_before_the_first_checkpoint_then_rerun_reads_each_step_once(corpus, tmp_path, monkeypatch):
    cfg = config_from_dict(demo_dict(corpus, epochs=1))
    crash = {"on": True}
    original = Trainer._evaluate_dev

    def dev_then_crash(self, **kwargs):
        if crash["on"]:
            raise RuntimeError("simulated crash at the end of epoch 1, before its checkpoint")
        return original(self, **kwargs)

    monkeypatch.setattr(Trainer, "_evaluate_dev", dev_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(cfg, tmp_path, progress=False).fit()
    assert not (tmp_path / "checkpoints" / "last.pt").exists()
    first = _steps(tmp_path)
    assert len(first) == 12  # the crashed start's rows are on disk
    crash["on"] = False
    Trainer(cfg, tmp_path, progress=False).fit()
    steps = _steps(tmp_path)
    assert steps["step"].tolist() == list(range(12)) and set(steps["attempt"]) == {1}
    assert steps["run_id"].nunique() == 1 and steps["run_id"].iloc[0] == first["run_id"].iloc[0]


def test_kill_minus_9_in_epoch_1_then_rerun_reads_each_step_once(corpus, tmp_path):
    config = tmp_path / "c.yaml"
    raw = demo_dict(corpus, epochs=1, batch_size=2)  # 48 steps in epoch 1
    raw["telemetry"]["flush_every"] = 2
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "dpda.cli", "-q", "train", str(config), "-o", str(run)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = run / "telemetry" / "steps" / "attempt-0"
    deadline = time.monotonic() + 300
    while not list(parts.glob("part-*.parquet")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no telemetry part appeared"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "checkpoints" / "last.pt").exists(), "killed too late: epoch 1 had finished"
    written = _steps(run)
    assert 0 < len(written) < 48
    assert main(["-q", "train", str(config), "-o", str(run)]) == 0
    steps = _steps(run)
    assert steps["step"].tolist() == list(range(48)) and steps["run_id"].nunique() == 1
    load_checkpoint(run / "model.pt")
    _no_temp_files(run / "checkpoints")


# ---------------------------------------------------------------------------------------------
# the run directory: one writer, files that parse, full disks


def test_a_second_run_in_the_same_folder_fails_in_one_line(corpus, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(demo_dict(corpus, epochs=1)))
    run = tmp_path / "run"
    with RunDirLock(run):
        assert main(["train", str(config), "-o", str(run)]) == 2
    line = _one_line(capsys, f"dpda train: error: {run}: another dpda run is writing here (pid {os.getpid()})")
    assert line.endswith("choose another output folder")
    assert not (run / "checkpoints").exists() and not (run / "telemetry").exists()


def test_a_full_disk_during_a_checkpoint_leaves_the_previous_one_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"format": "x", "step": 1}, path)

    def full_disk(state, target):
        Path(target).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full_disk)
    with pytest.raises(UserError, match=rf"^{path}: could not write the checkpoint \(the previous one is kept\): "
                                        "No space left on device$"):
        save_checkpoint({"format": "x", "step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_summaries_are_valid_json_even_with_nan(tmp_path):
    write_json(tmp_path / "s.json", {"eer": math.nan, "sets": {"itw": [0.1, math.inf]}, "n": 3})
    assert json.loads((tmp_path / "s.json").read_text()) == {"eer": None, "sets": {"itw": [0.1, None]}, "n": 3}
    assert json_safe((1.5, -math.inf)) == [1.5, None]


# ---------------------------------------------------------------------------------------------
# configs and command lines that used to end in a traceback or a misleading error


@pytest.mark.parametrize(("patch", "message"), [
    ({"loss": {"class_weights": [float("inf"), 1]}}, "loss.class_weights[0]: must be a finite number, got inf"),
    ({"optim": {"lr": float("inf")}}, "optim.lr: must be a finite number, got inf"),
    ({"optim": {"weight_decay": float("nan")}}, "optim.weight_decay: must be a finite number, got nan"),
    ({"device": "tpu9"}, "device: must be auto or a torch device (cpu, cuda, cuda:N, mps), got 'tpu9'"),
    ({"data": {"length": 100_000_000_000}}, "data.length: must be in (0, 9.6e+06], got 100000000000"),
])
def test_config_values_that_cannot_train_are_one_line(corpus, tmp_path, capsys, patch, message):
    raw = demo_dict(corpus)
    for section, value in patch.items():
        raw[section] = {**raw[section], **value} if isinstance(value, dict) else value
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["train", str(config), "-o", str(tmp_path / "run")]) == 2
    _one_line(capsys, f"dpda train: error: {config}: {message}")
    assert not (tmp_path / "run").exists()


def test_an_empty_config_file_is_one_line(tmp_path, capsys):
    config = tmp_path / "empty.yaml"
    config.write_text("# nothing yet\n")
    assert main(["train", str(config), "-o", str(tmp_path / "run")]) == 2
    _one_line(capsys, f"dpda train: error: {config}: the config file is empty")


def test_a_device_this_machine_lacks_is_one_line(model_run, corpus, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["eval", str(model_run / "model.pt"), f"csv:{corpus}/dev.csv", "-o", str(tmp_path), "--device", "cuda"]) == 2
    _one_line(capsys, "dpda eval: error: device: 'cuda' asked for, but torch sees no CUDA device here")


# ---------------------------------------------------------------------------------------------
# model files that do not fit, NaN weights, audio that breaks after the check


def _model_file(model_run: Path, tmp_path: Path, edit) -> Path:
    state = torch.load(model_run / "model.pt", weights_only=True)
    edit(state)
    path = tmp_path / "model.pt"
    torch.save(state, path)
    return path


def test_weights_that_do_not_fit_the_stored_config_are_one_line(model_run, corpus, tmp_path, capsys):
    def other_model(state):
        state["config"]["model"] = {**state["config"]["model"], "name": "rawnet2"}

    path = _model_file(model_run, tmp_path, other_model)
    assert main(["eval", str(path), f"csv:{corpus}/dev.csv", "-o", str(tmp_path / "out")]) == 2
    line = _one_line(capsys, f"dpda eval: error: {path}: the weights do not fit the rawnet2:tiny model its config describes (")
    assert "first: missing" in line


def test_resuming_with_another_model_is_one_line(model_run, corpus, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(demo_dict(corpus, epochs=2)))
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes((model_run / "checkpoints" / "last.pt").read_bytes())
    assert main(["train", str(config), "-o", str(run), "--set", "model.name=rawnet2"]) == 2
    _one_line(capsys, f"dpda train: error: {run / 'checkpoints' / 'last.pt'}: the weights do not fit this run's "
                      "rawnet2:tiny model (was the run started with another model?")


def test_nan_weights_never_give_scores(model_run, corpus, tmp_path, capsys):
    def poison(state):
        for value in state["model"].values():
            if value.is_floating_point():
                value.fill_(float("nan"))

    path = _model_file(model_run, tmp_path, poison)
    first = (corpus / "dev.csv").read_text().splitlines()[1].split(",")[0]
    assert main(["eval", str(path), f"csv:{corpus}/dev.csv", "-o", str(tmp_path / "out")]) == 2
    _one_line(capsys, f"dpda eval: error: {corpus / first}: the model's score is not finite (32 of 32 files)")
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert main(["predict", str(path), str(corpus / first)]) == 2
    _one_line(capsys, f"dpda predict: error: {corpus / first}: the model's score is not finite (1 of 1 files)")


def test_a_model_file_without_a_dev_threshold_is_one_line(model_run, corpus, tmp_path, capsys):
    path = _model_file(model_run, tmp_path, lambda state: state.pop("dev_threshold"))
    audio = corpus / (corpus / "dev.csv").read_text().splitlines()[1].split(",")[0]
    assert main(["predict", str(path), str(audio)]) == 2
    _one_line(capsys, f"dpda predict: error: {path}: no dev threshold stored in this model file; pass --threshold")


def test_a_file_that_breaks_after_the_check_is_named_not_replaced(model_run, corpus, tmp_path, capsys, monkeypatch):
    from dpda.data import dataset

    rows = (corpus / "dev.csv").read_text().splitlines()
    broken = corpus / rows[3].split(",")[0]
    real_load = dataset.AudioDataset._load

    def breaks_later(self, j):  # the check read it fine; by scoring time it is gone
        if self.paths[j] == str(broken):
            raise dataset.AudioReadError(f"{broken}: cannot read audio (No such file or directory)")
        return real_load(self, j)

    monkeypatch.setattr(dataset.AudioDataset, "_load", breaks_later)
    assert main(["eval", str(model_run / "model.pt"), f"csv:{corpus}/dev.csv", "-o", str(tmp_path / "out"),
                 "--loader-workers", "0"]) == 2
    _one_line(capsys, f"dpda eval: error: {broken}: cannot read audio (No such file or directory) "
                      "(it became unreadable after the check; fix or remove it)")


# ---------------------------------------------------------------------------------------------
# a search that cannot run must not start Ray, and one where no trial finished must not succeed


def test_tune_checks_corpus_paths_before_ray_starts(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    space = Path(__file__).resolve().parents[1] / "search_spaces" / "demo.yaml"
    assert main(["tune", str(space), "--data", str(tmp_path / "nonexistent"), "--storage", str(tmp_path / "r")]) == 2
    _one_line(capsys, f"dpda tune: error: {space}: data.train[0]: {tmp_path / 'nonexistent'}/LA does not exist")
    assert not ray.is_initialized() and not (tmp_path / "r").exists()


def test_a_search_without_a_finished_trial_writes_no_best_config(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import pandas as pd

    from dpda.tune import tuner

    from dpda.tune.search_space import TuneSettings

    grid = [SimpleNamespace(metrics={"trial_id": f"t{i}"}, config={}, path=None) for i in range(2)]
    space = SimpleNamespace(tune=TuneSettings(num_samples=2), trial_config=lambda c: c, params=())
    monkeypatch.setattr(tuner, "_tune_states", lambda path, filesystem=None: {})
    monkeypatch.setattr(tuner, "trial_conflicts", lambda exp: {})
    monkeypatch.setattr(tuner, "results_table", lambda space, grid, states, conflicts: pd.DataFrame(
        {"trial_id": ["t0", "t1"], "status": ["error"] * 2, "model_dev_eer": [float("nan"), 0.1]}))
    outcome = tuner.summarise(space, grid, str(tmp_path))
    assert outcome.best_config is None and outcome.best_metric is None and not outcome.interrupted
    assert not (tmp_path / tuner.BEST_CONFIG).exists()
