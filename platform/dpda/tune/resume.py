"""What makes an interrupted search resumable, whenever the driver died: the searcher's state, on
restore, agrees with the Optuna study; the study file is checked before Optuna reads it. (Which
files resume may unpickle at all: dpda.tune.state_manifest.)

Why reconcile: Optuna's study (optuna.db) is written at once, Tune's saved state only every few
seconds. A driver killed after a trial's last result has the trial COMPLETE in Optuna but running in
Tune's (and the searcher's) saved state; Tune then restarts the trial and the searcher's report to
the finished Optuna trial raised UpdateFinishedTrialError on every later resume. Each Optuna trial
records its Tune trial id (user attribute), so the restored searcher marks the trials that Optuna
has finished as completed (Tune's later reports of them are ignored) and finds Optuna trials its
older pickle did not know yet.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from dpda.errors import UserError
from dpda.tune import faults

TUNE_TRIAL_ATTR = "tune_trial_id"

log = logging.getLogger(__name__)


class ReconciledOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch reconciled with the Optuna study on restore, and tolerant of results for trials Optuna has already finished (or never saw). `exp_dir`: the
    local experiment folder, for fault injection (dpda.tune.faults) only."""

    def __init__(self, *args: Any, exp_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exp_dir = exp_dir

    def suggest(self, trial_id: str) -> dict | None:
        params = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return params

    def _known(self, trial_id: str) -> bool:
        if trial_id in self._ot_trials:
            return True
        log.warning("trial %s is not in the searcher's state (an older state was restored); its result is not "
                    "told to Optuna", trial_id)
        return False

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._known(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._known(trial_id):
            super().on_trial_complete(trial_id, result=result, error=error)
            self.__dict__.setdefault("_completed_here", []).append(trial_id)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        # trials completed by this driver; Tune's state file is written by now, ours not yet
        for trial_id in self.__dict__.get("_completed_here", []):
            faults.hit("checkpoint_upload", trial_id, getattr(self, "exp_dir", None))
        super().save_to_dir(checkpoint_dir, session_str)

    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore (a pickle: run_search has checked it against the state manifest), then
        agree with the study."""
        super().restore(checkpoint_path)
        self._completed_here = []
        reconcile(self)


def reconcile(searcher: OptunaSearch) -> list[str]:
    """Make the searcher agree with its Optuna study: trials that Optuna has finished are completed,
    Optuna trials of Tune trials the searcher lost are known again. Returns the trial ids it marked
    completed."""
    import optuna

    study = searcher._ot_study
    if study is None:
        return []
    marked = []
    for frozen in study.get_trials(deepcopy=False):
        trial_id = frozen.user_attrs.get(TUNE_TRIAL_ATTR)
        if trial_id is None:
            continue
        if trial_id not in searcher._ot_trials:
            searcher._ot_trials[trial_id] = optuna.Trial(study, frozen._trial_id)
        if frozen.state.is_finished() and trial_id not in searcher._completed_trials:
            searcher._completed_trials.add(trial_id)
            marked.append(trial_id)
    return marked


def check_study_file(path: Path) -> None:
    """A study file that SQLite cannot open, or whose integrity check fails (a truncated copy), is
    one line, before Optuna or Tune touch it."""
    if not path.exists():
        return
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()
            db.execute("SELECT count(*) FROM trials").fetchone()
    except sqlite3.Error as exc:
        raise UserError(f"{path}: Optuna study is not a readable SQLite database ({exc}); "
                        "restore it from a copy or start a new experiment with --name") from None
    if not verdict or verdict[0] != "ok":
        raise UserError(f"{path}: Optuna study fails SQLite's integrity check ({verdict and verdict[0]}); "
                        "restore it from a copy or start a new experiment with --name")
