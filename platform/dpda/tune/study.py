"""`dpda study`'s driver: a study's variants x seeds as one Ray Tune grid, then its tables.

Each (variant, seed) is one Tune trial trained by `dpda.tune.tuner.run_trial`, exactly as a
search's trial (checkpoints, telemetry, object storage mirroring, the corpus verdicts). What
differs from a search, and why: the trials are a grid (`tune.grid_search` over variants and
seeds), not Optuna's proposals, and there is no scheduler (Tune's FIFO), so every run gets the
same budget and stops early only by the trainer's own patience: a difference is the variants'.
Resume, the lock and the state-file checks are the search's (`Tuner.restore`; `hold_experiment`,
`check_experiment`, `state_manifest`): an interrupted study continues without rerunning finished
runs. At the end the runs' files are tabulated by dpda_analysis.study.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dpda_analysis.location import Location

from dpda.tune import faults
from dpda.tune.study_spec import StudyGrid
from dpda.tune.tuner import (TRAIN_RUNS, _ray_filesystem, _shown, _sigterm_interrupts, _trainable, check_corpora,
                             max_concurrent, trial_name)

STUDY_SNAPSHOT = "study_spec.json"  # the study's fingerprint: a resume must find the same one


@dataclass(frozen=True)
class StudyOutcome:
    experiment_path: str
    runs: Any  # pandas.DataFrame: one row per variant x seed (dpda_analysis.study.read_runs)
    differences: Any  # pandas.DataFrame: the paired differences (study.csv)
    unfinished: int  # grid points without a finished run (an interrupted or partly failed study)


def fingerprint(grid: StudyGrid) -> dict[str, Any]:
    return grid.fingerprint()


def run_study(grid: StudyGrid, exp: Location, store: Location, *, resume: bool = False, verbose: int = 1,
              checked: dict[str, dict[str, Any]] | None = None, callbacks: Sequence[Any] = (),
              command: str = "dpda study") -> StudyOutcome:
    """Run (or with `resume`, continue) the study in `exp` (= `store`/grid.name); Ray must be
    initialised and the caller must hold the experiment (`hold_experiment`, `check_experiment`
    with this module's fingerprint), as `dpda study` does. `callbacks`: extra Tune callbacks."""
    from dpda.tune.controller_hooks import hooked
    from dpda.tune.state_manifest import tagging

    remote = not exp.is_local
    if not remote:
        from pathlib import Path

        from dpda.tune.leftovers import record_current

        record_current(Path(exp.root))
    layout = {
        "driver_pid": os.getpid(),
        "fault_dir": None if remote else exp.root,
        "experiment": grid.name,
        "cwd": os.getcwd(),
        "train_storage": exp.child(TRAIN_RUNS).root,
        "storage_filesystem": _ray_filesystem(exp),
        "checked": checked if checked is not None else check_corpora(grid),
    }
    trainable = _trainable(grid, layout)
    with tagging(exp.fs, exp.root), hooked():
        tuner = _tuner(grid, exp, store, resume, trainable, callbacks, verbose)
        with _sigterm_interrupts():
            tuner.fit()
    return tabulate(grid, exp, command)


def tabulate(grid: StudyGrid, exp: Location, command: str = "dpda study") -> StudyOutcome:
    """runs.csv, study.csv, study.md and study.html from the runs' files."""
    from dpda_analysis.study import write_study

    runs, differences = write_study(exp, baseline=grid.baseline, variants=grid.variant_names, metrics=grid.metrics,
                                    title=f"Study {grid.name}", command=command)
    done = set() if runs.empty else {(r.variant, r.seed) for r in runs.itertuples() if r.finished}
    unfinished = sum((v, s) not in done for v in grid.variant_names for s in grid.seeds)
    return StudyOutcome(_shown(exp), runs, differences, unfinished)


def _tuner(grid: StudyGrid, exp: Location, store: Location, resume: bool, trainable: Any,
           callbacks: Sequence[Any], verbose: int) -> Any:
    import ray
    from ray import tune

    fs = _ray_filesystem(exp)
    if resume:
        return tune.Tuner.restore(exp.root, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                  storage_filesystem=fs)
    exp.child(STUDY_SNAPSHOT).write_text(json.dumps(fingerprint(grid), indent=2))
    fault = None if not exp.is_local else faults.driver_callback(exp.root)
    return tune.Tuner(
        trainable,
        # Tune varies the first key fastest: seed-major order, so the first runs cover every
        # variant and an interrupted study already has pairs
        param_space={"variant": tune.grid_search(grid.variant_names), "seed": tune.grid_search(list(grid.seeds))},
        tune_config=tune.TuneConfig(
            num_samples=1,  # each grid point once; no search_alg (the grid) and no scheduler (FIFO)
            max_concurrent_trials=max_concurrent(grid, ray.cluster_resources()),
            trial_name_creator=trial_name, trial_dirname_creator=trial_name, reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=grid.name, storage_path=store.root, storage_filesystem=fs, verbose=verbose,
            callbacks=[*callbacks, *([fault] if fault else [])],
            failure_config=tune.FailureConfig(max_failures=grid.tune.max_failures if grid.tune.workers == 1 else 0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # dpda prunes its storage itself
        ),
    )
