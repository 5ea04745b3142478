"""The Optuna study reconciled with the trials Tune restored (dpda.tune.resume.reconcile_with_tune),
and the controller hooks that call it and save Tune's state after each new trial
(dpda.tune.controller_hooks). No Ray cluster: stand-ins for Tune's trials and controller."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

pytest.importorskip("ray.tune")

from ray.tune.execution.tune_controller import TuneController  # noqa: E402
from ray.tune.search import ConcurrencyLimiter  # noqa: E402

from dpda.train.trial_result import MODEL_SAVED  # noqa: E402
from dpda.tune.controller_hooks import hooked  # noqa: E402
from dpda.tune.resume import (LOST_ATTR, LOST_REASON, TUNE_TRIAL_ATTR, ReconciledOptunaSearch,  # noqa: E402
                              reconcile_with_tune)


class _Trial:
    """What reconciling reads of a restored Tune trial."""

    ERROR = "ERROR"

    def __init__(self, trial_id: str, status: str, last_result: dict | None = None) -> None:
        self.trial_id, self.status, self.last_result = trial_id, status, last_result or {}

    def is_finished(self) -> bool:
        return self.status in ("TERMINATED", "ERROR")


def _searcher_with(ids: list[str]) -> ReconciledOptunaSearch:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = ReconciledOptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)}, metric="loss",
                                      mode="min", sampler=optuna.samplers.TPESampler(seed=0))
    for trial_id in ids:
        searcher.suggest(trial_id)
    return searcher


def _study_rows(searcher: ReconciledOptunaSearch) -> dict[str, tuple[str, Any, Any]]:
    return {t.user_attrs[TUNE_TRIAL_ATTR]: (t.state.name, t.value, t.user_attrs.get(LOST_ATTR))
            for t in searcher._ot_study.get_trials()}


def _restored() -> list[_Trial]:
    """Tune's restored state: `ended` ended (the study never heard), `running` runs, `told` ended and
    the study has it; `lost` is only in the study (killed before Tune saved it)."""
    return [_Trial("ended", "TERMINATED", {"loss": 0.25, "training_iteration": 2, MODEL_SAVED: 1}),
            _Trial("running", "RUNNING", {"loss": 0.5, "training_iteration": 1}),
            _Trial("told", "TERMINATED", {"loss": 0.75})]


def test_study_and_limiter_agree_with_the_trials_tune_restored() -> None:
    searcher = _searcher_with(["ended", "lost", "running", "told"])
    searcher.on_trial_complete("told", {"loss": 0.75, MODEL_SAVED: 1})
    limiter = ConcurrencyLimiter(searcher, max_concurrent=1)
    limiter.live_trials, limiter.num_unfinished_live_trials = {"lost"}, 1  # saved a little apart from Tune's

    done = reconcile_with_tune(limiter, _restored())

    assert done == {"lost": ["lost"], "told": ["ended"]}
    assert _study_rows(searcher) == {
        "ended": ("COMPLETE", 0.25, None),  # Tune's last result (its saved model's), as the searcher tells it
        "lost": ("FAIL", None, LOST_REASON),
        "running": ("RUNNING", None, None),  # Tune runs it on: its completion comes later
        "told": ("COMPLETE", 0.75, None),
    }
    assert (limiter.live_trials, limiter.num_unfinished_live_trials) == ({"running"}, 1)
    # the running trial's completion now reaches the study through the limiter; it saved no
    # model (ASHA stopped it): PRUNED
    limiter.on_trial_complete("running", {"loss": 0.5})
    assert _study_rows(searcher)["running"] == ("PRUNED", None, None)
    # a second resume changes nothing: no trial is finished twice
    assert reconcile_with_tune(limiter, _restored()) == {"lost": [], "told": []}
    assert [t.state.name for t in searcher._ot_study.get_trials()] == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]


class _Controller:
    """A stand-in for TuneController: one new trial from the searcher, the saves it is asked for."""

    def __init__(self, search_alg: Any, trials: list[_Trial]) -> None:
        self._search_alg, self._trials, self.saves, self.added = search_alg, trials, [], []

    def add_trial(self, trial: Any) -> None:
        self.added.append(trial)

    def checkpoint(self, force: bool = False, wait: bool = False) -> None:
        self.saves.append((list(self.added), force, wait))

    def get_trials(self) -> list[_Trial]:
        return self._trials


class _NextTrial:
    def __init__(self, trials: list[str]) -> None:
        self.trials = trials

    def next_trial(self) -> str | None:
        return self.trials.pop(0) if self.trials else None


def test_hooks_save_after_each_new_trial_and_reconcile_on_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TuneController, "resume", lambda controller, resume_config: None)  # Tune's own restore
    original_queue, original_resume = TuneController._update_trial_queue, TuneController.resume
    controller = _Controller(_NextTrial(["t1"]), [])
    with hooked():
        assert TuneController._update_trial_queue(controller) is True
        assert TuneController._update_trial_queue(controller) is False  # no new trial: no save
        # saved with the new trial in it, and the copy waited for, before Tune can start it
        assert controller.saves == [(["t1"], True, True)]

        searcher = _searcher_with(["ended", "lost", "running", "told"])
        TuneController.resume(_Controller(searcher, _restored()), None)
        assert _study_rows(searcher)["lost"] == ("FAIL", None, LOST_REASON)
        assert _study_rows(searcher)["ended"] == ("COMPLETE", 0.25, None)
    assert (TuneController._update_trial_queue, TuneController.resume) == (original_queue, original_resume)
