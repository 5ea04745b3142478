"""Fault injection for the search driver: `DPDA_TUNE_FAULT=PHASE[@TRIAL]` makes the driver SIGKILL
itself at a named phase of the search, so tests interrupt it at phase boundaries deterministically
rather than at random times (tests/test_tune_resume.py). Unset (the normal case) it does nothing.

Phases (TRIAL: the trial's index, the number at the end of Tune's trial id; default 0):
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
from typing import Any

ENV = "DPDA_TUNE_FAULT"
PHASES = ("trial_start", "mid_epoch", "last_epoch", "checkpoint_upload", "between_trials")


def armed() -> tuple[str, int] | None:
    """The (phase, trial index) that $DPDA_TUNE_FAULT names, or None."""
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return None
    phase, _, index = spec.partition("@")
    if phase not in PHASES or (index and not index.isdigit()):
        raise ValueError(f"${ENV}={spec!r}: expected PHASE[@TRIAL] with PHASE one of {', '.join(PHASES)}")
    return phase, int(index or 0)


def trial_index(trial_id: str | None) -> int | None:
    """Tune's trial ids end in the trial's index (`3f2a1_00002` -> 2)."""
    tail = (trial_id or "").rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def hit(phase: str, trial_id: str | None = None, driver_pid: int | None = None) -> None:
    """SIGKILL the driver (this process, or `driver_pid`) if the fault names this phase and trial."""
    fault = armed()
    if fault is None or fault[0] != phase:
        return
    if trial_id is not None and trial_index(trial_id) != fault[1]:
        return
    os.kill(driver_pid or os.getpid(), signal.SIGKILL)
    if driver_pid is None:  # pragma: no cover - SIGKILL does not return
        os._exit(137)


def driver_callback() -> Any | None:
    """A Tune callback that fires the driver-side phases, or None when no fault is armed."""
    if armed() is None:
        return None
    from ray.tune import Callback

    class _Faults(Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            hit("between_trials", trial.trial_id)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            hit("last_epoch", trial.trial_id)

    return _Faults()
