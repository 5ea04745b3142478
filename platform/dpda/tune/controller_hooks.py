"""Two hooks on Tune's controller that keep the Optuna study and Tune's saved experiment state
describing the same trials, whenever the driver is killed (what that means:
dpda.tune.resume's docstring).

Why: the searcher creates a trial in the study at once (Optuna's `ask` writes optuna.db), while Tune
saves its state only every >= 10 s and copies it into the experiment folder after that. A trial
that started, or even finished in the study, within that window was lost to a resumed Tune, which
asked for another in its place (tests/test_tune_driver_kill.py showed both). So:
- right after the searcher created a trial, and before Tune starts it, Tune's state is saved and
  the copy waited for (`TuneController._update_trial_queue`, then `checkpoint(force=True,
  wait=True)`): a trial can finish in the study only once Tune's saved state has it; a driver
  killed before that save leaves it unstarted, unfinished in the study, and resume closes it as
  lost;
- on resume, once Tune has restored its trials (`TuneController.resume`), the study and the
  searcher chain are reconciled with them (dpda.tune.resume.reconcile_with_tune).

Coupling to Ray's internals (pyproject pins ray==2.60.0, as for dpda.tune.state_manifest): the two
method names above, `TuneController.checkpoint`, `get_trials` and `_search_alg`. The hooks are
installed only while dpda's driver runs a search (`hooked`), never at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def hooked() -> Iterator[None]:
    """While held, Tune's controller saves its state (and waits for the copy) after each trial
    the searcher creates, and reconciles the study with the trials it restores on resume."""
    from ray.tune.execution.tune_controller import TuneController

    from dpda.tune.resume import reconcile_with_tune

    original_queue = TuneController._update_trial_queue
    original_resume = TuneController.resume

    def _update_trial_queue(controller: TuneController, *args: Any, **kwargs: Any) -> bool:
        added = original_queue(controller, *args, **kwargs)
        if added:  # the searcher made a trial (the study has it): Tune's saved state gets it now
            controller.checkpoint(force=True, wait=True)
        return added

    def resume(controller: TuneController, *args: Any, **kwargs: Any) -> None:
        original_resume(controller, *args, **kwargs)
        reconcile_with_tune(controller._search_alg, controller.get_trials())

    TuneController._update_trial_queue = _update_trial_queue
    TuneController.resume = resume
    try:
        yield
    finally:
        TuneController._update_trial_queue = original_queue
        TuneController.resume = original_resume
