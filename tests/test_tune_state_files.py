"""The files a search keeps, without a Ray cluster: every file that resume unpickles must be
vouched for by the state manifest (a swapped-in or truncated pickle is refused in one line naming
it, never unpickled); the searcher's state is reconciled with the Optuna study on restore; one
writer per experiment, locked before Ray starts; a damaged study file is one line; leftovers of a
killed driver's Ray session are ended, and nothing else; fault injection parses its phases."""

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
from dpda.tune import faults, leftovers, lock, resume, state_manifest, trust
from support import write_tiny_corpus

ROOT = Path(__file__).resolve().parents[1]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(trial) -> None:
    trial.suggest_float("lr", 1e-3, 1e-1, log=True)


def _searcher(tmp_path: Path, cls=resume.ReconciledOptunaSearch):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    return cls(space=_space, metric="loss", mode="min", study_name="s", storage=storage,
               sampler=optuna.samplers.TPESampler(seed=0))


def _result(value: float, it: int) -> dict:
    return {"loss": value, "training_iteration": it}


def _saved(value: float, it: int) -> dict:
    """A trial's last report after it saved its model (dpda.train.trial_result): COMPLETE in Optuna."""
    from dpda.train.trial_result import MODEL_SAVED

    return {**_result(value, it), MODEL_SAVED: 1}


def test_tags_name_the_file_and_need_the_key(tmp_path: Path, monkeypatch) -> None:
    tag = state_manifest.tag("a.pkl", b"payload")
    assert (Path(os.environ["DPDA_CONFIG_DIR"]) / trust.KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert tag == state_manifest.tag("a.pkl", b"payload")
    assert tag not in (state_manifest.tag("b.pkl", b"payload"), state_manifest.tag("a.pkl", b"paylOad"),
                       state_manifest.tag("a.pk", b"lpayload"))  # the name/content boundary is fixed
    monkeypatch.setenv("DPDA_CONFIG_DIR", str(tmp_path / "other"))
    assert state_manifest.tag("a.pkl", b"payload") != tag


def test_resume_after_optuna_finished_a_trial_that_the_saved_state_has_running(tmp_path: Path) -> None:
    """The driver dies after a trial's last result: Optuna has it COMPLETE, the saved searcher
    state (and Tune's) has it running. Ray's OptunaSearch then fails on every resume; ours marks it
    completed and ignores the re-reported results; Optuna keeps one COMPLETE trial with its value."""
    from ray.tune.search.optuna import OptunaSearch

    for cls, folder in ((OptunaSearch, tmp_path / "ray"), (resume.ReconciledOptunaSearch, tmp_path / "dpda")):
        folder.mkdir()
        first = _searcher(folder, cls)
        first.suggest("t_00000")
        first.on_trial_result("t_00000", _result(0.5, 1))
        first.save_to_dir(str(folder), "a")  # Tune's last save: the trial still running
        first.on_trial_complete("t_00000", _saved(0.4, 2))  # Optuna: COMPLETE; then SIGKILL
        restored = _searcher(folder, cls)
        restored.restore_from_dir(str(folder))
        if cls is OptunaSearch:  # the bug: Tune re-runs the trial, its report dies
            with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
                restored.on_trial_result("t_00000", _result(0.4, 2))  # its last epoch, again
            continue
        restored.on_trial_result("t_00000", _result(0.4, 2))
        restored.on_trial_complete("t_00000", _saved(0.3, 2))
        restored.suggest("t_00001")
        restored.on_trial_complete("t_00001", _saved(0.7, 1))
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
    restored.on_trial_complete("t_00000", _saved(0.5, 1))
    restored.on_trial_complete("t_99999", _saved(0.5, 1))  # unknown anywhere: ignored, no KeyError
    assert [t.state.name for t in restored._ot_study.trials] == ["COMPLETE"]


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


SESSION = "2024-01-01_00-00-00"


def _genuine_experiment(exp: Path) -> dict[str, bytes]:
    """An experiment folder as dpda's driver leaves it: Tune's state files, each tagged in the
    manifest when it was produced (what `state_manifest.tagging` does during a search)."""
    from ray.tune.utils.serialization import TuneFunctionEncoder
    import json

    exp.mkdir(parents=True, exist_ok=True)
    files = {
        state_manifest.TUNER_PKL: pickle.dumps({"_run_config": None}),
        f"experiment_state-{SESSION}.json": json.dumps({"runner_data": {"fn": len}, "trial_data": []},
                                                       cls=TuneFunctionEncoder).encode(),
        f"search_gen_state-{SESSION}.json": pickle.dumps({"_counter": 3}),
        f"searcher-state-{SESSION}.pkl": pickle.dumps({"_ot_trials": {}}),
        f"callback-states-{SESSION}.pkl": pickle.dumps({"callbacks": []}),
    }
    state_manifest.record(_localfs(), str(exp), files)
    for name, content in files.items():
        (exp / name).write_bytes(content)
    return files


def _localfs():
    import pyarrow.fs

    return pyarrow.fs.LocalFileSystem()


def _payloads(marker: Path) -> dict[str, bytes]:
    """A payload that runs code when Tune deserializes the file, in each file's own format."""
    import json

    blob = {"_type": "CLOUDPICKLE_FALLBACK", "value": pickle.dumps(_Payload(marker)).hex()}
    return {
        f"experiment_state-{SESSION}.json": json.dumps({"runner_data": blob, "trial_data": []}).encode(),
        f"search_gen_state-{SESSION}.json": pickle.dumps(_Payload(marker)),
        f"callback-states-{SESSION}.pkl": pickle.dumps(_Payload(marker)),
        f"searcher-state-{SESSION}.pkl": pickle.dumps(_Payload(marker)),
        state_manifest.TUNER_PKL: pickle.dumps(_Payload(marker)),
    }


def test_the_payloads_would_run_if_tune_loaded_them(tmp_path: Path) -> None:
    """What the refusals below prevent: Ray's own loaders execute these files."""
    import ray.cloudpickle
    from ray.tune.utils.serialization import _loads_with_cloudpickle

    marker = tmp_path / "pwned"
    for name, data in _payloads(marker).items():
        (_loads_with_cloudpickle if name.endswith(".json") and name.startswith("experiment_state")
         else ray.cloudpickle.loads)(data)
        assert marker.exists(), name
        marker.unlink()


def _tune_cli(corpus: Path, storage: Path, *extra: str) -> list[str]:
    return ["-q", "tune", str(ROOT / "search_spaces/demo.yaml"), "--data", str(corpus), "--storage", str(storage),
            *extra]


@pytest.fixture()
def no_ray(monkeypatch):
    """`dpda tune` in this process, with Ray's start and the corpus decode made to fail loudly."""
    from dpda.tune import session, tuner

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started (or the corpus decoded) before the refusal")

    monkeypatch.setattr(session, "init_ray", refuse)
    monkeypatch.setattr(tuner, "check_corpora", refuse)


def test_resume_refuses_each_state_file_it_cannot_trust_without_running_it(tmp_path: Path, capsys, no_ray) -> None:
    from dpda.cli import main

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=4, n_dev=4)
    exp = tmp_path / "results" / "demo"
    marker = tmp_path / "pwned"
    genuine = _genuine_experiment(exp)
    state_manifest.verify_experiment(_localfs(), str(exp))  # as written: vouched for
    for name, payload in _payloads(marker).items():
        (exp / name).write_bytes(payload)
        capsys.readouterr()
        assert main(_tune_cli(corpus, tmp_path / "results", "--resume")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"dpda tune: error: {exp / name}: content not in {state_manifest.MANIFEST} (altered, "
                       f"truncated, or written by another user or key than {trust.key_path()}); refusing to unpickle it"]
        assert not marker.exists()
        (exp / name).write_bytes(genuine[name][: len(genuine[name]) // 2])  # a truncated copy: refused too
        with pytest.raises(UserError, match=f"{name}: content not in"):
            state_manifest.verify_experiment(_localfs(), str(exp))
        (exp / name).write_bytes(genuine[name])
    # a newer file that Tune would pick instead, planted beside the genuine ones
    (exp / "experiment_state-2099-01-01_00-00-00.json").write_bytes(_payloads(marker)[f"experiment_state-{SESSION}.json"])
    with pytest.raises(UserError, match="experiment_state-2099-01-01_00-00-00.json: content not in"):
        state_manifest.verify_experiment(_localfs(), str(exp))
    (exp / "experiment_state-2099-01-01_00-00-00.json").unlink()
    (exp / state_manifest.MANIFEST).unlink()  # no manifest: nothing is vouched for
    with pytest.raises(UserError, match=r"tuner\.pkl: no readable \.dpda-state-manifest beside it"):
        state_manifest.verify_experiment(_localfs(), str(exp))
    assert not marker.exists()


def test_the_manifest_keeps_the_last_contents_of_each_file(tmp_path: Path) -> None:
    """A kill during Tune's file-by-file copy leaves old and new files side by side: both verify;
    a content older than the last KEEP saves does not."""
    fs, name = _localfs(), f"experiment_state-{SESSION}.json"
    versions = [f"save {i}".encode() for i in range(state_manifest.KEEP + 1)]
    for version in versions:
        state_manifest.record(fs, str(tmp_path), {name: version, "other.pkl": version})
    for i, version in enumerate(versions):
        (tmp_path / name).write_bytes(version)
        if i == 0:
            with pytest.raises(UserError, match="content not in"):
                state_manifest.verify_experiment(fs, str(tmp_path))
        else:
            state_manifest.verify_experiment(fs, str(tmp_path))
    entries = state_manifest._read_manifest(fs, str(tmp_path))
    assert {k: len(v) for k, v in entries.items()} == {name: state_manifest.KEEP, "other.pkl": state_manifest.KEEP}
    assert not list(tmp_path.glob("*.tmp"))


def test_dpda_records_are_not_copied_back_by_tunes_syncs() -> None:
    """Tune's restore copies the experiment folder's *.json / *.pkl into its staging folder and
    every later sync copies the staging folder back: a record so named is overwritten by its stale
    copy (the manifest lost its tags, the session record its session, after a resume)."""
    import inspect

    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    source = inspect.getsource(_ExperimentCheckpointManager.sync_down_experiment_state)
    assert 'path.endswith(".json") or path.endswith(".pkl")' in source  # Ray 2.60's filter
    for name in (state_manifest.MANIFEST, leftovers.SESSION_FILE, lock.LOCK_FILE):
        assert not name.endswith((".json", ".pkl")), name


def test_a_tuner_made_while_tagging_writes_a_vouched_tuner_pkl(tmp_path: Path) -> None:
    """Tune's own Tuner (no Ray cluster needed to make one): its tuner.pkl is tagged between
    Tune's pickling and its write; outside `tagging` nothing is tagged and Ray's module is as it was."""
    from ray import tune
    from ray.tune.impl import tuner_internal

    original = tuner_internal.pickle
    exp = tmp_path / "exp"
    with state_manifest.tagging(_localfs(), str(exp)):
        tune.Tuner(lambda config: None, run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path)))
    assert tuner_internal.pickle is original
    state_manifest.verify_experiment(_localfs(), str(exp))
    tune.Tuner(lambda config: None, run_config=tune.RunConfig(name="untagged", storage_path=str(tmp_path)))
    with pytest.raises(UserError, match="untagged/tuner.pkl: no readable"):
        state_manifest.verify_experiment(_localfs(), str(tmp_path / "untagged"))


def test_a_second_driver_is_refused_before_ray_starts(tmp_path: Path, capsys, no_ray) -> None:
    from dpda.cli import main

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=4, n_dev=4)
    exp = tmp_path / "results" / "demo"
    held = lock.lock_experiment(exp)
    try:
        for extra in ((), ("--resume",)):
            capsys.readouterr()
            assert main(_tune_cli(corpus, tmp_path / "results", *extra)) == 2
            assert capsys.readouterr().err.strip().splitlines() == [
                f"dpda tune: error: {exp}: another `dpda tune` is running this experiment (it holds "
                f"{lock.LOCK_FILE}); wait for it to end or stop it first"]
    finally:
        held.release()


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
        ended = leftovers.end_previous(exp)
        leftovers.record_current(exp)
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

    from dpda.tune.search_space import TuneSettings

    grid = [SimpleNamespace(metrics={"trial_id": f"t{i}"}, config={"x": i}, path=None) for i in range(len(statuses))]
    space = SimpleNamespace(tune=TuneSettings(num_samples=2), trial_config=lambda c: c, params=())
    monkeypatch.setattr(tuner, "_tune_states", lambda path, filesystem=None: {})
    monkeypatch.setattr(tuner, "trial_conflicts", lambda exp: {})
    table = pd.DataFrame({"trial_id": [f"t{i}" for i in range(len(statuses))], "status": statuses,
                          "model_dev_eer": [0.1, 0.05][:len(statuses)]})
    monkeypatch.setattr(tuner, "results_table", lambda space, grid, states, conflicts: table)
    outcome = tuner.summarise(space, grid, str(tmp_path))
    # the best trial is the completed one: a stopped or failed trial saved no model, lower value or not
    assert (outcome.interrupted, outcome.failed, outcome.best_metric, outcome.best_trial_id) == (interrupted, failed, 0.1, "t0")
    ended = not interrupted and not failed
    assert (tmp_path / tuner.BEST_CONFIG).exists() == ended
    message = tuner.unfinished_message(outcome)
    assert (message is None) == ended
    assert ("Best config:" in tuner.format_outcome(space, outcome)) == ended
