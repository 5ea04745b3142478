"""Fault injection for the search driver: `DPDA_TUNE_FAULT=PHASE[@TRIAL]` makes the driver SIGKILL
itself at a named phase of the search, so tests interrupt it at phase boundaries deterministically
rather than at random times (tests/test_tune_resume.py). Unset (the normal case) it does nothing.

Without @TRIAL a fault fires at the phase's first occurrence; with it, at that trial's (0 for the
first trial the experiment saw, 1 for the next...; Tune's trial ids are random, so an armed search
lists them in the order it first sees them in EXPERIMENT/.dpda-fault-trials). A fault fires once
per experiment (a marker file says it did), so a --resume with the same variable goes on. Phases:
  trial_start        the trial's process has started (Tune records it RUNNING)
  mid_epoch          the trial finished its first epoch but has not reported it
  last_epoch         the trial's last result is in and Optuna has it COMPLETE; Tune has not saved that
  checkpoint_upload  the driver is saving the experiment state: Tune's file is written, the searcher's not yet
  between_trials     the driver is about to start the next trial (TRIAL = the one about to start)

The trial-side phases kill the driver by its pid (carried in the trial's layout), as a SIGKILL of
the driver at that moment would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

ENV = "DPDA_TUNE_FAULT"
REGISTRY = ".dpda-fault-trials"
PHASES = ("trial_start", "mid_epoch", "last_epoch", "checkpoint_upload", "between_trials")


def armed() -> tuple[str, int | None] | None:
    """The (phase, trial index or None) that $DPDA_TUNE_FAULT names, or None."""
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return None
    phase, _, index = spec.partition("@")
    if phase not in PHASES or (index and not index.isdigit()):
        raise ValueError(f"${ENV}={spec!r}: expected PHASE[@TRIAL] with PHASE one of {', '.join(PHASES)}")
    return phase, int(index) if index else None


def trial_index(trial_id: str, exp_dir: str | os.PathLike) -> int:
    """The trial's index in the experiment's order of first sight (registered on first call)."""
    path = Path(exp_dir, REGISTRY)
    seen = list(dict.fromkeys(path.read_text().split())) if path.exists() else []
    if trial_id not in seen:
        with open(path, "a") as f:
            f.write(trial_id + "\n")
        seen.append(trial_id)
    return seen.index(trial_id)


def hit(phase: str, trial_id: str, exp_dir: str | os.PathLike | None, driver_pid: int | None = None) -> None:
    """SIGKILL the driver (this process, or `driver_pid`) if the fault names this phase and trial."""
    fault = armed()
    if fault is None or exp_dir is None:
        return
    index = trial_index(trial_id, exp_dir)
    if fault[0] != phase or fault[1] not in (None, index):
        return
    try:  # once per experiment
        os.close(os.open(Path(exp_dir, f".dpda-fault-fired-{phase}-{fault[1]}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(driver_pid or os.getpid(), signal.SIGKILL)
    if driver_pid is None:  # pragma: no cover - SIGKILL does not return
        os._exit(137)


def driver_callback(exp_dir: str) -> Any | None:
    """A Tune callback that fires the driver-side phases, or None when no fault is armed."""
    if armed() is None:
        return None
    from ray.tune import Callback

    class _Faults(Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            hit("between_trials", trial.trial_id, exp_dir)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            hit("last_epoch", trial.trial_id, exp_dir)

    return _Faults()
