"""What makes an interrupted search resumable, whenever the driver died: the searcher's state and
the Optuna study, on restore, agree with the trials Tune restored; the study file is checked before
Optuna reads it. (Which files resume may unpickle at all: dpda.tune.state_manifest.)

Why: Optuna's study (optuna.db) is written at once, Tune's saved experiment state only every few
seconds (and copied into the experiment folder after that). Each Optuna trial records its Tune
trial id (user attribute `tune_trial_id`), so a resumed driver can put the two side by side:
- Optuna has the trial finished, Tune's state has it running (killed after its last result): the
  searcher marks it completed and Tune's reports of its rerun are not told again (they raised
  UpdateFinishedTrialError on every later resume).
- Tune's state has it ended, Optuna has it running (a completion that never reached the study):
  it is told now, from Tune's last result, as the searcher would have told it (`tell_ended`:
  COMPLETE with the saved model's values, PRUNED when stopped early, FAIL on an error).
- Optuna has a trial that Tune's state does not (killed after the searcher created it, before
  Tune's state with it was saved): Tune never runs it and asks the searcher for another in its
  place, so the study closes it as FAIL with user attribute `lost` (LOST_REASON), set before it
  is finished. It cannot have finished in Optuna already: dpda.tune.controller_hooks saves Tune's
  state, and waits for the copy, right after the searcher creates a trial and before it starts.

"The same final trial set", what a search ended after any number of kills and resumes holds (and
tests/test_tune_driver_kill.py asserts): every trial of the study is finished; no Tune trial id
is on two study trials (none finished twice); the ids of the study's COMPLETE and PRUNED trials
are exactly Tune's trials (results.csv; FAIL for one that errored for good); every other study
trial is FAIL with the `lost` attribute.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from contextlib import closing
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from dpda.errors import UserError
from dpda.tune import faults

TUNE_TRIAL_ATTR = "tune_trial_id"
LOST_ATTR = "lost"  # on a study trial that Tune's saved state never had
LOST_REASON = "driver killed before Tune saved it"

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
            tell_ended(self, trial_id, result, error)
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


def tell_ended(searcher: OptunaSearch, trial_id: str, result: dict | None, error: bool) -> None:
    """Tell the study how a Tune trial ended: COMPLETE with the saved model's values when it saved
    one (dpda.train.trial_result), FAIL on an error (or a saved model without a finite value),
    PRUNED when it was stopped early. Ray's OptunaSearch calls every trial that reported its metric
    COMPLETE, ASHA's stopped ones included, with their last epoch's value."""
    import optuna

    from dpda.train.trial_result import saved

    if trial_id in searcher._completed_trials:
        log.warning("trial %s already ended in the study; its completion is not told again", trial_id)
        return
    State = optuna.trial.TrialState
    keys = searcher.metric if isinstance(searcher.metric, list) else [searcher.metric]
    values = [(result or {}).get(k) for k in keys]
    finite = all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    state = State.FAIL if error else State.PRUNED if not saved(result) else State.COMPLETE if finite else State.FAIL
    told = (values if len(values) > 1 else values[0]) if state == State.COMPLETE else None
    searcher._ot_study.tell(searcher._ot_trials[trial_id], told, state=state)
    searcher._completed_trials.add(trial_id)


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


def reconcile_with_tune(search_alg: Any, trials: Sequence[Any]) -> dict[str, list[str]]:
    """After Tune restored `trials` (its saved experiment state), make the study and the searcher
    chain agree with them (the module docstring's cases): close the study trials Tune does not
    have as lost, tell the ones Tune has ended, and give a ConcurrencyLimiter exactly Tune's
    unfinished trials as live (else it drops their completions, or waits on trials that never
    come). `search_alg`: Tune's SearchGenerator or any searcher chain ending in a
    ReconciledOptunaSearch. Returns the trial ids closed as `lost` and `told`."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.utils import flatten_dict

    chain = [search_alg]
    while hasattr(chain[-1], "searcher"):
        chain.append(chain[-1].searcher)
    searcher = chain[-1]
    done: dict[str, list[str]] = {"lost": [], "told": []}
    if not isinstance(searcher, ReconciledOptunaSearch) or searcher._ot_study is None:
        return done
    study = searcher._ot_study
    in_tune = {t.trial_id: t for t in trials}
    for frozen in study.get_trials(deepcopy=False):
        trial_id = frozen.user_attrs.get(TUNE_TRIAL_ATTR)
        trial = in_tune.get(trial_id)
        if trial is None and not frozen.state.is_finished():
            ot_trial = optuna.Trial(study, frozen._trial_id)
            ot_trial.set_user_attr(LOST_ATTR, LOST_REASON)
            study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            if trial_id is not None:
                searcher._ot_trials.pop(trial_id, None)
                searcher._completed_trials.add(trial_id)
            done["lost"].append(trial_id or f"#{frozen.number}")
        elif trial is None and LOST_ATTR not in frozen.user_attrs:
            log.warning("Optuna trial %s (Tune trial %s) finished but Tune's saved state does not have it",
                        frozen.number, trial_id)
        elif trial is not None and trial.is_finished() and not frozen.state.is_finished():
            tell_ended(searcher, trial_id, flatten_dict(trial.last_result or {}), trial.status == trial.ERROR)
            done["told"].append(trial_id)
    live = {t for t, trial in in_tune.items() if not trial.is_finished()}
    for limiter in chain:
        if isinstance(limiter, ConcurrencyLimiter) and limiter.live_trials != live:
            log.warning("concurrency limiter had live trials %s, Tune %s", sorted(limiter.live_trials), sorted(live))
            limiter.live_trials = set(live)
            limiter.num_unfinished_live_trials = len(live)
    return done


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
