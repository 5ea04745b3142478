"""The files a search keeps, without a Ray cluster: the searcher's state is signed (a swapped-in
or truncated pickle is refused in one line, never unpickled) and reconciled with the Optuna study
on restore; one writer per experiment; a damaged study file is one line; leftovers of a killed
driver's Ray session are ended, and nothing else; fault injection parses its phases."""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from dpda.errors import UserError
from dpda.tune import faults, leftovers, lock, resume, trust

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(trial) -> None:
    trial.suggest_float("lr", 1e-3, 1e-1, log=True)


def _searcher(tmp_path: Path, cls=resume.SignedOptunaSearch):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    return cls(space=_space, metric="loss", mode="min", study_name="s", storage=storage,
               sampler=optuna.samplers.TPESampler(seed=0))


def _result(value: float, it: int) -> dict:
    return {"loss": value, "training_iteration": it}


def _state_file(folder: Path) -> Path:
    return next(folder.glob("searcher-state-*.pkl"))


def test_signed_round_trip_and_refusals(tmp_path: Path) -> None:
    data = trust.sign(b"payload")
    assert trust.verify(data, "f") == b"payload"
    assert (Path(os.environ["DPDA_CONFIG_DIR"]) / trust.KEY_FILE).stat().st_mode & 0o777 == 0o600
    for bad in (data[:-1], data + b"x", data.replace(b"payload", b"paylOad"), b"payload", b""):
        with pytest.raises(UserError) as err:
            trust.verify(bad, "x.pkl")
        assert str(err.value).startswith("x.pkl: ") and "\n" not in str(err.value)


def test_a_tag_made_with_another_key_is_refused(tmp_path: Path, monkeypatch) -> None:
    data = trust.sign(b"state")
    monkeypatch.setenv("DPDA_CONFIG_DIR", str(tmp_path / "other"))
    with pytest.raises(UserError, match="signature does not match"):
        trust.verify(data, "f")


def test_resume_after_optuna_finished_a_trial_that_the_saved_state_has_running(tmp_path: Path) -> None:
    """The driver dies after a trial's last result: Optuna has it COMPLETE, the saved searcher
    state (and Tune's) has it running. Ray's OptunaSearch then fails on every resume; ours marks it
    completed and ignores the re-reported results; Optuna keeps one COMPLETE trial with its value."""
    from ray.tune.search.optuna import OptunaSearch

    for cls, folder in ((OptunaSearch, tmp_path / "ray"), (resume.SignedOptunaSearch, tmp_path / "dpda")):
        folder.mkdir()
        first = _searcher(folder, cls)
        first.suggest("t_00000")
        first.on_trial_result("t_00000", _result(0.5, 1))
        first.save_to_dir(str(folder), "a")  # Tune's last save: the trial still running
        first.on_trial_complete("t_00000", _result(0.4, 2))  # Optuna: COMPLETE; then SIGKILL
        restored = _searcher(folder, cls)
        restored.restore_from_dir(str(folder))
        if cls is OptunaSearch:  # the bug: Tune re-runs the trial, its report dies
            with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
                restored.on_trial_result("t_00000", _result(0.4, 2))  # its last epoch, again
            continue
        restored.on_trial_result("t_00000", _result(0.4, 2))
        restored.on_trial_complete("t_00000", _result(0.3, 2))
        restored.suggest("t_00001")
        restored.on_trial_complete("t_00001", _result(0.7, 1))
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'dpda' / 'optuna.db'}")
    assert [(t.state.name, t.value, t.user_attrs[resume.TUNE_TRIAL_ATTR]) for t in study.trials] == [
        ("COMPLETE", 0.4, "t_00000"), ("COMPLETE", 0.7, "t_00001")]


def test_restore_finds_trials_suggested_after_the_saved_state(tmp_path: Path) -> None:
    """An older searcher state than Tune's (the driver died between the two saves): the restored
    searcher knows the later trial again from the study, and tells Optuna its result."""
    first = _searcher(tmp_path)
    first.save_to_dir(str(tmp_path), "a")
    first.suggest("t_00000")
    restored = _searcher(tmp_path)
    restored.restore_from_dir(str(tmp_path))
    restored.on_trial_result("t_00000", _result(0.5, 1))
    restored.on_trial_complete("t_00000", _result(0.5, 1))
    restored.on_trial_complete("t_99999", _result(0.5, 1))  # unknown anywhere: ignored, no KeyError
    assert [t.state.name for t in restored._ot_study.trials] == ["COMPLETE"]


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_payload_pickle_in_place_of_the_searcher_state_is_not_run(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.save_to_dir(str(tmp_path), "a")
    marker = tmp_path / "pwned"
    _state_file(tmp_path).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UserError) as err:
        _searcher(tmp_path).restore_from_dir(str(tmp_path))
    assert "not a file dpda signed" in str(err.value) and "\n" not in str(err.value)
    import pyarrow.fs  # the check run_search makes before Tune.restore (which would swallow the error)
    with pytest.raises(UserError, match="not a file dpda signed"):
        resume.verify_searcher_state(pyarrow.fs.LocalFileSystem(), str(tmp_path))
    assert not marker.exists()
    # a payload behind a copied valid header is refused too
    _state_file(tmp_path).write_bytes(trust.sign(b"x")[:len(trust.MAGIC) + 65] + pickle.dumps(_Payload(marker)))
    with pytest.raises(UserError, match="signature does not match"):
        _searcher(tmp_path).restore_from_dir(str(tmp_path))
    assert not marker.exists()


def test_a_truncated_searcher_state_is_one_line(tmp_path: Path) -> None:
    searcher = _searcher(tmp_path)
    searcher.suggest("t_00000")
    searcher.save_to_dir(str(tmp_path), "a")
    path = _state_file(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match=r"searcher-state-a\.pkl: signature does not match"):
        _searcher(tmp_path).restore_from_dir(str(tmp_path))


def test_tuner_pickle_is_verified_against_its_signature(tmp_path: Path) -> None:
    pkl = tmp_path / resume.TUNER_PKL
    pkl.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(UserError, match="no signature"):
        resume.verify_tuner_state(tmp_path)
    resume.sign_tuner_state(tmp_path)
    resume.verify_tuner_state(tmp_path)
    pkl.write_bytes(pickle.dumps(_Payload(tmp_path / "pwned")))
    with pytest.raises(UserError, match="does not match its signature"):
        resume.verify_tuner_state(tmp_path)


def test_damaged_study_file_is_one_line(tmp_path: Path) -> None:
    _searcher(tmp_path).suggest("t_00000")
    db = tmp_path / "optuna.db"
    resume.check_study_file(db)  # intact
    data = db.read_bytes()
    for damaged in (data[: len(data) // 2], data[:100], b"not a database" * 100):
        db.write_bytes(damaged)
        with pytest.raises(UserError) as err:
            resume.check_study_file(db)
        assert str(err.value).startswith(f"{db}: Optuna study") and "\n" not in str(err.value)


def test_one_writer_per_experiment(tmp_path: Path) -> None:
    held = lock.lock_experiment(tmp_path / "exp")
    try:
        with pytest.raises(UserError) as err:
            lock.lock_experiment(tmp_path / "exp")
        assert "another `dpda tune` is running" in str(err.value)
        other = subprocess.run([sys.executable, "-c", (
            "import sys; sys.path[:0] = ['platform', 'analysis']\n"
            "from dpda.tune.lock import lock_experiment\n"
            f"lock_experiment(__import__('pathlib').Path({str(tmp_path / 'exp')!r}))")],
            cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=60)
        assert other.returncode != 0 and "another `dpda tune` is running" in other.stderr
    finally:
        held.release()
    lock.lock_experiment(tmp_path / "exp").release()  # free again once released


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = ("import sys, time; sys.path[:0] = ['platform', 'analysis']\n"
            "from dpda.tune.lock import lock_experiment\n"
            f"held = lock_experiment(__import__('pathlib').Path({str(tmp_path / 'exp')!r})); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError):
            lock.lock_experiment(tmp_path / "exp")
    finally:
        holder.kill()
        holder.wait()
    lock.lock_experiment(tmp_path / "exp").release()


def _fake_ray_process(session_dir: str, ignore_term: bool = False) -> subprocess.Popen:
    """A stand-in for a Ray agent: its command line names the session dir; it may ignore SIGTERM."""
    code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "") + \
        "print('up', flush=True)\ntime.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", code, f"--session-dir={session_dir}"], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "up"
    return proc


def test_leftovers_of_the_recorded_session_are_ended_and_nothing_else(tmp_path: Path, monkeypatch) -> None:
    import json
    import socket

    session = str(tmp_path / "ray" / "session_2024-01-01_00-00-00_000001_12")
    agent = _fake_ray_process(session, ignore_term=True)  # ignores SIGTERM, as Ray's agents did
    logs = _fake_ray_process(session + "/logs")
    lookalike = _fake_ray_process(session + "3")  # another session whose name starts alike
    try:
        exp = tmp_path / "exp"
        exp.mkdir()
        (exp / leftovers.SESSION_FILE).write_text(json.dumps({"session_dir": session, "host": socket.gethostname()}))
        monkeypatch.setattr(leftovers, "current_session", lambda: str(tmp_path / "ray" / "session_now_99"))
        ended = leftovers.clean_and_record(exp)
        assert sorted(ended) == sorted([agent.pid, logs.pid])
        assert agent.wait(timeout=30) == -signal.SIGKILL and logs.wait(timeout=30) == -signal.SIGTERM
        assert lookalike.poll() is None
        assert json.loads((exp / leftovers.SESSION_FILE).read_text())["session_dir"].endswith("session_now_99")
    finally:
        for proc in (agent, logs, lookalike):
            proc.kill()
            proc.wait()


def test_fault_spec_parsing(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    assert faults.armed() is None
    faults.hit("last_epoch", "aa", tmp_path)  # unarmed: nothing happens, nothing registered
    assert not (tmp_path / faults.REGISTRY).exists()
    monkeypatch.setenv(faults.ENV, "last_epoch@2")
    assert faults.armed() == ("last_epoch", 2)
    assert [faults.trial_index(t, tmp_path) for t in ("cc", "aa", "cc", "bb", "aa")] == [0, 1, 0, 2, 1]
    faults.hit("last_epoch", "aa", tmp_path)  # another trial: nothing happens
    faults.hit("mid_epoch", "bb", tmp_path)  # another phase: nothing happens
    monkeypatch.setenv(faults.ENV, "mid_epoch")
    assert faults.armed() == ("mid_epoch", None)
    monkeypatch.setenv(faults.ENV, "nonsense")
    with pytest.raises(ValueError, match="PHASE"):
        faults.armed()


def test_a_fault_kills_the_named_process(tmp_path: Path) -> None:
    code = ("import sys; sys.path[:0] = ['platform', 'analysis']\n"
            f"from dpda.tune import faults\nfaults.hit('between_trials', 'b', {str(tmp_path)!r})\n"
            f"faults.hit('between_trials', 'a', {str(tmp_path)!r})\nprint('survived')")
    (tmp_path / faults.REGISTRY).write_text("a\nb\n")
    env = {**os.environ, faults.ENV: "between_trials@0"}
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and "survived" not in done.stdout
    again = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "survived" in again.stdout  # once per experiment


@pytest.mark.parametrize("statuses, interrupted, failed", [
    (["completed", "interrupted"], True, 0),  # Ctrl-C / SIGTERM: a trial was running
    (["completed"], True, 0),  # fewer trials than num_samples
    (["completed", "error"], False, 1),  # a trial failed: --resume reruns it
    (["completed", "stopped early"], False, 0),
])
def test_best_config_only_for_a_search_that_ended(tmp_path: Path, monkeypatch, statuses, interrupted, failed) -> None:
    from types import SimpleNamespace

    import pandas as pd

    from dpda.tune import tuner

    class Grid:
        def __len__(self):
            return len(statuses)

        def get_best_result(self, **kw):
            return SimpleNamespace(metrics={"dev_eer": 0.1, "trial_id": "t0"}, config={"x": 1},
                                   metrics_dataframe=pd.DataFrame({"dev_eer": [0.2, 0.1]}), path=None)

    space = SimpleNamespace(tune=SimpleNamespace(metric="dev_eer", mode="min", num_samples=2),
                            trial_config=lambda c: c, params=())
    monkeypatch.setattr(tuner, "_tune_states", lambda path, filesystem=None: {})
    monkeypatch.setattr(tuner, "results_table",
                        lambda space, grid, states, remote=False: pd.DataFrame({"status": statuses}))
    outcome = tuner.summarise(space, Grid(), str(tmp_path))
    assert (outcome.interrupted, outcome.failed, outcome.best_metric) == (interrupted, failed, 0.1)
    ended = not interrupted and not failed
    assert (tmp_path / tuner.BEST_CONFIG).exists() == ended
    message = tuner.unfinished_message(outcome)
    assert (message is None) == ended
    assert ("Best config:" in tuner.format_outcome(space, outcome)) == ended
