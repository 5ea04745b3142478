"""SIGKILL of the `dpda tune` driver (no chance to save or clean up), then `--resume`: finished
trials are not run again, and the killed driver leaves no Ray process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from support import write_tiny_corpus

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
RAY_PROCESS = ("raylet", "gcs_server", "ray::", "dashboard", "log_monitor", "monitor.py", "runtime_env")


def _ray_pids(session_of: int | None = None) -> set[int]:
    """PIDs of Ray's processes on this machine; with `session_of`, only those of the local cluster
    that driver PID started (Ray names the session directory after the driver's PID)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(name in cmd for name in RAY_PROCESS) and "pytest" not in cmd:
            if session_of is None or f"_{session_of}/" in cmd or f"_{session_of} " in cmd:
                pids.add(int(entry.name))
    return pids


def _finished(exp: Path) -> list[str]:
    """Trials that Tune's saved experiment state records as ended (what `--resume` keeps), with
    their model written. A trial that wrote its summary but was not yet recorded runs again on
    resume, from its last checkpoint, and that is right."""
    from dpda.tune.tuner import _tune_states

    if not exp.exists():
        return []
    return [t for t, status in _tune_states(str(exp)).items()
            if status == "TERMINATED" and (exp / f"trial_{t}" / "summary.json").exists()]


def _tune(corpus: Path, storage: Path, *extra: str) -> list[str]:
    """`--address local`: the driver starts (and owns) its own local cluster, as on a laptop,
    rather than joining one that another process on this machine started."""
    return [sys.executable, "-m", "dpda.cli", "-q", "tune", str(ROOT / "search_spaces/demo.yaml"),
            "--data", str(corpus), "--storage", str(storage), "--num-samples", "3", "--max-concurrent", "1",
            "--epochs", "1", "--metric", "dev_loss", "--set", "data.length=8000", "--set", "optim.batch_size=4",
            "--set", "optim.max_steps_per_epoch=3", "--set", "telemetry.flush_every=3", "--address", "local", *extra]


def test_sigkill_of_the_tune_driver_then_resume(tmp_path: Path) -> None:
    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=16, n_dev=16)
    storage = tmp_path / "results"
    exp = storage / "demo"
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    driver = subprocess.Popen(_tune(corpus, storage), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 300
        while not _finished(exp):  # Tune's saved state has a trial that ended
            assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no trial finished in time"
            time.sleep(0.5)
        assert _ray_pids(driver.pid), "the driver started no local Ray cluster?"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
        # what a resume must not run again: the trials Tune's saved state records as ended
        finished = {t: (exp / f"trial_{t}" / "summary.json").read_bytes() for t in _finished(exp)}
        assert finished
        # the local cluster shares the driver's fate (Ray's kernel fate sharing on Linux)
        deadline = time.monotonic() + 60
        while _ray_pids(driver.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _ray_pids(driver.pid), "Ray processes of the killed driver are still running"

        resumed = subprocess.run(_tune(corpus, storage, "--resume"), capture_output=True, text=True, timeout=600,
                                 env=env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        for trial, content in finished.items():  # finished trials did not run again
            assert (exp / f"trial_{trial}" / "summary.json").read_bytes() == content, trial
        table = pd.read_csv(exp / "results.csv")
        assert len(table) == 3 and table["trial_id"].is_unique
        assert set(table["status"]) <= {"completed", "stopped early"}, table
        assert (exp / "best_config.yaml").exists()
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in _ray_pids(driver.pid):  # never leave this test's Ray processes behind
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _run(cmd: list[str], env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1] if stderr.strip() else ""


def test_driver_killed_at_every_phase_then_resumed(tmp_path: Path) -> None:
    """The driver SIGKILLs itself at each named phase in turn (dpda.tune.faults), each time on a
    --resume of the same experiment; the state files they left are vouched for by the manifest
    and a swapped-in payload is refused in one line; SIGTERM ends the search with rc != 0 and no best_config; the last
    --resume finishes it: the study and Tune's trials are the same final trial set (dpda.tune.resume),
    no Ray process of the killed drivers left."""
    import json
    import sqlite3

    from dpda.tune import faults, leftovers, resume

    corpus = write_tiny_corpus(tmp_path / "corpus", n_train=16, n_dev=16)
    storage = tmp_path / "results"
    exp = storage / "demo"
    base = {k: v for k, v in os.environ.items() if k != faults.ENV} | {"RAY_DEDUP_LOGS": "0"}
    cmd = [*_tune(corpus, storage), "--epochs", "2"]  # the last --epochs wins: mid_epoch needs 2
    sessions = []
    for i, fault in enumerate(("mid_epoch", "last_epoch", "checkpoint_upload", "between_trials", "trial_start")):
        done = _run(cmd + (["--resume"] if i else []), base | {faults.ENV: fault})
        assert done.returncode == -signal.SIGKILL, (fault, done.returncode, done.stderr[-3000:])
        assert not (exp / "best_config.yaml").exists()
        sessions.append(json.loads((exp / leftovers.SESSION_FILE).read_text())["session_dir"])
        if fault == "last_epoch":  # the case that failed every later resume: Optuna has the trial COMPLETE
            with sqlite3.connect(exp / "optuna.db") as db:
                assert ("COMPLETE",) in db.execute("select state from trials").fetchall()

    # the genuine state files of the killed drivers are vouched for; a payload pickle in place of
    # one is refused before Ray starts, and not run (each kind of file: test_tune_state_files.py)
    import pyarrow.fs

    from dpda.tune import state_manifest

    loaded = state_manifest.files_tune_loads(pyarrow.fs.LocalFileSystem(), str(exp))
    assert {n.split("-")[0] for n in loaded} >= {"tuner.pkl", "experiment_state", "search_gen_state", "searcher"}, loaded
    state_manifest.verify_experiment(pyarrow.fs.LocalFileSystem(), str(exp))
    state = exp / max(n for n in loaded if n.startswith("experiment_state-"))
    original = state.read_bytes()
    marker = tmp_path / "pwned"
    state.write_bytes(b'{"runner_data": {"_type": "CLOUDPICKLE_FALLBACK", "value": "'
                      + (b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.").hex().encode() + b'"}}')
    done = _run(cmd + ["--resume"], base)
    assert done.returncode == 2 and not marker.exists(), done.stderr[-3000:]
    assert _last_line(done.stderr).startswith(f"dpda tune: error: {state}: content not in "), done.stderr[-3000:]
    state.write_bytes(original)

    # SIGTERM while a trial runs (its first epoch reported): Tune saves and returns; rc 2, no best_config
    lines = {p: p.stat().st_size for p in exp.glob("trial_*/result.json")}
    driver = subprocess.Popen(cmd + ["--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=base)
    try:
        deadline = time.monotonic() + 300
        while not any(p.stat().st_size > lines.get(p, 0) for p in exp.glob("trial_*/result.json")):
            assert driver.poll() is None, driver.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "no trial reported in time"
            time.sleep(0.5)
        driver.send_signal(signal.SIGTERM)
        stderr = driver.communicate(timeout=300)[1]
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 2, stderr[-3000:]
    assert "interrupted" in _last_line(stderr) and "--resume" in _last_line(stderr)
    assert not (exp / "best_config.yaml").exists()

    done = _run(cmd + ["--resume"], base)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(exp / "results.csv")
    assert len(table) == 3 and table["trial_id"].is_unique
    assert set(table["status"]) <= {"completed", "stopped early"}, table
    assert (exp / "best_config.yaml").exists()
    # the same final trial set (dpda.tune.resume): every study trial finished, none twice; COMPLETE
    # and PRUNED ones are Tune's trials, any other was lost to Tune and is FAIL, saying so
    with sqlite3.connect(exp / "optuna.db") as db:
        rows = db.execute("select t.state, i.value_json, l.value_json from trials t "
                          "left join trial_user_attributes i on i.trial_id = t.trial_id and i.key = ? "
                          "left join trial_user_attributes l on l.trial_id = t.trial_id and l.key = ?",
                          (resume.TUNE_TRIAL_ATTR, resume.LOST_ATTR)).fetchall()
    rows = [(state, ident and json.loads(ident), lost and json.loads(lost)) for state, ident, lost in rows]
    ids = [ident for _, ident, _ in rows if ident is not None]
    assert len(ids) == len(set(ids)), rows
    assert sorted(ident for state, ident, _ in rows if state in ("COMPLETE", "PRUNED")) == sorted(table["trial_id"]), rows
    assert all(lost == resume.LOST_REASON for state, ident, lost in rows if state not in ("COMPLETE", "PRUNED")), rows
    assert all(state in ("COMPLETE", "PRUNED", "FAIL") for state, _, _ in rows), rows
    for session in sessions:  # the killed drivers' Ray sessions were ended by the next start
        assert not leftovers._session_processes(session), session
