"""Ray Tune + Optuna search over a `SearchSpace`, with ASHA early stopping on the trial's result.

A trial's result is the dev metric of the model it saves (dpda.train.trial_result): each epoch
reports it for the best checkpoint so far (ASHA and Optuna's intermediate values read that), the
last report for the saved model.pt. Tune's metric, Optuna's values and states (ASHA-stopped trials
PRUNED), TensorBoard's HParams, results.csv, best_config.yaml and the report all read it; the
objectives (one or several dev metrics) are dpda.tune.objectives.

A trial is either one Trainer process (tune.resources.workers == 1) or, for workers > 1, a Ray
Train run launched from inside the trial (the Ray Train V2 way: the trial function is the Train
driver; `TuneReportCallback` forwards rank 0's per-epoch metrics to Tune, so ASHA and Optuna see
them). The Optuna searcher gets the search space as a define-by-run function, so conditional
parameters exist only when active; it is seeded, and its state is saved with the experiment so
`resume=True` (Tuner.restore) continues an interrupted search without rerunning finished trials.

ASHA's time attribute is the Trainer's 1-based `epoch`, not Tune's `training_iteration`: a trial
resumed from a checkpoint keeps counting epochs where it left off.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import signal
import tempfile
from contextlib import ExitStack, contextmanager
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from dpda_analysis.errors import LocationError
from dpda_analysis.layout import PARETO_FRONT, SEARCH_RESULTS, SEARCH_SPACE_FILE
from dpda_analysis.location import Location, is_uri, join, resolve

from dpda.errors import UserError
from dpda.train.checkpoint_store import CheckpointUpdate, StoredCheckpoints, report_and_prune
from dpda.train.run_sync import RunMirror, mirrored, trial_destination
from dpda.tune import faults
from dpda.train.trial_result import EPOCH_CONFLICT, model_key, saved
from dpda.tune.search_space import SearchSpace, name_problem
from dpda.tune.study_files import hparams_callback, optuna_storage, scalars_only_logger, trial_status

TIME_ATTR = "epoch"
SPACE_SNAPSHOT = SEARCH_SPACE_FILE  # the report reads the searched keys and their scales from it
RESULTS_CSV = SEARCH_RESULTS
BEST_CONFIG = "best_config.yaml"
PARETO_CSV = PARETO_FRONT  # a multi-objective search's answer (the report draws it)
TRAIN_RUNS = "train_runs"  # Ray Train storage of multi-worker trials, inside the experiment dir


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished search produced (also written to the experiment dir)."""

    experiment_path: str
    table: Any  # pandas.DataFrame, one row per trial
    best_trial_id: str | None
    best_metric: float | None  # the best trial's result: the first objective's value of its saved model
    best_config: dict[str, Any] | None
    best_model: str | None
    interrupted: bool
    failed: int = 0  # trials that ended in an error (--resume runs them again)
    pareto: Any = None  # pandas.DataFrame of the Pareto front (several objectives), else None


# ----------------------------------------------------------------------------- trial side

def trial_name(trial: Any) -> str:
    """Short trial names and dirs (the default embeds every parameter: unreadable here)."""
    return f"trial_{trial.trial_id}"


def _tune_report(metrics: dict[str, Any], update: CheckpointUpdate | None, mirror: RunMirror | None = None,
                 driver_pid: int | None = None, fault_dir: str | None = None) -> None:
    """Report an epoch to Tune with only the files it changed, then prune the trial's storage
    to last.pt + the n best epochs (dpda.train.checkpoint_store). With object storage the run
    dir's new files are uploaded first (dpda.train.run_sync): what is reported is stored."""
    import ray.tune

    if metrics.get(TIME_ATTR) == 1 and not saved(metrics):  # an epoch's report, not the saved model's
        faults.hit("mid_epoch", ray.tune.get_context().get_trial_id(), fault_dir, driver_pid)
    report_and_prune(ray.tune, dict(metrics), update, mirror, storage_path="trial_fs_path")


def _restore_tune_checkpoint(target: Path) -> Path | None:
    """Fetch the trial's checkpoint from Tune's storage alone (its last.pt, the n best epoch
    files beside it) into `target`; None on a first start."""
    import ray.tune

    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is None:
        return None
    return StoredCheckpoints.of_checkpoint(checkpoint).restore(checkpoint.path, target)


def run_trial(params: dict[str, Any], space: SearchSpace, layout: dict[str, Any]) -> None:
    """The Tune trainable: one trial of the search (single process or a Ray Train run)."""
    import ray.tune

    from dpda.train.config import config_from_dict
    from dpda.train.loop import Trainer
    from dpda.train.ray_train import WorkerPlan, _enter_workdir, run_distributed

    ctx = ray.tune.get_context()
    trial_id = ctx.get_trial_id()
    faults.hit("trial_start", trial_id, layout.get("fault_dir"), layout.get("driver_pid"))
    # The trial dir is the Trainer's run dir: Tune's params.json/result.json sit beside the
    # telemetry, so dpda_analysis sees one run per trial. With object storage the run dir is
    # node-local scratch that the trial mirrors to its folder there (dpda.train.run_sync); Tune
    # itself syncs only the driver's trial dirs (and all of them again at each sync).
    destination = trial_destination(ctx.get_storage())
    run_dir = Path(ctx.get_storage().trial_working_directory if destination else ctx.get_trial_dir())
    _enter_workdir(layout.get("cwd"))
    source = f"{space.source} (trial {trial_id})"
    cfg = config_from_dict(space.trial_config(params), source=source)
    settings = space.tune
    if settings.workers == 1:
        scratch = Path(tempfile.mkdtemp(prefix=f"dpda-{trial_id}-"))  # working copies, node-local
        mirror = RunMirror(run_dir, destination) if destination else None
        try:
            resume = _restore_tune_checkpoint(scratch / "restored")
            report = functools.partial(_tune_report, mirror=mirror, driver_pid=layout.get("driver_pid"),
                                       fault_dir=layout.get("fault_dir"))
            with mirrored(mirror):
                Trainer(cfg, run_dir, report_fn=report, run_id=layout["experiment"], trial_id=trial_id,
                        resume_from=resume, progress=False, checkpoint_dir=scratch / "checkpoints",
                        checked=layout.get("checked")).fit()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    run_distributed(
        cfg, run_dir,
        plan=WorkerPlan(settings.workers, settings.cpu, settings.gpu),
        max_failures=settings.max_failures,
        storage_path=layout["train_storage"],
        storage_filesystem=layout.get("storage_filesystem"),
        name=trial_id,  # deterministic: a restarted trial finds its Train run's checkpoints
        run_id=layout["experiment"],
        trial_id=trial_id,
        callbacks=[TuneReportCallback()],
        mirror=destination,
        source=source,
        checked=layout.get("checked"),
    )


# ----------------------------------------------------------------------------- driver side

DEFAULT_STORAGE = "runs/tune"


def experiment_path(storage: str, name: str) -> str:
    """`storage/name` for a local path or a URI (a URI's query string stays at the end)."""
    return join(storage, name)


def storage_location(storage: str | os.PathLike | Location | None = None, filesystem: Any = None) -> Location:
    """The search's storage (default runs/tune), resolved once and checked before Ray starts: a
    missing bucket, bad credentials or a dead endpoint is one UserError naming the URI and the
    cause. `filesystem` makes `storage` a path on it, as in Ray's RunConfig."""
    try:
        location = resolve(DEFAULT_STORAGE if storage is None else storage, filesystem)
        location.check_writable()
    except LocationError as exc:
        raise UserError(f"storage {exc}") from None
    return location


def _shown(location: Location) -> str:
    """How the search names a place in messages and its outcome: a local absolute path, or the
    URI (as the user wrote it, joined) on another filesystem."""
    return location.root if location.is_local else str(location)


def _ray_filesystem(location: Location) -> Any:
    """What Ray gets as storage_filesystem: None for a local path (Ray's own local handling),
    else the resolved filesystem (its timeouts and retries, a URI's query parameters)."""
    return None if location.is_local else location.fs


def _below(experiment: Location, path: str) -> Location:
    """A path Ray reported (a trial dir) as a location below the experiment, for display."""
    sep = os.sep if experiment.is_local else "/"
    prefix = experiment.root.rstrip(sep) + sep
    if path.startswith(prefix):
        return experiment.child(*path[len(prefix):].split(sep))
    return resolve(path, None if is_uri(path) else _ray_filesystem(experiment))


def _fingerprint(space: SearchSpace) -> dict[str, Any]:
    """What must not change between an interrupted search and its resumption."""
    return json.loads(json.dumps({
        "base": space.base,
        "params": [dataclasses.asdict(p) for p in space.params],
        "metric": [g.key for g in space.tune.goals], "mode": space.tune.mode, "workers": space.tune.workers,
    }, default=str))


def check_corpora(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """Check the corpora and the augmentation's banks of the space's base config once, in the
    driver, before Ray starts (a failing one stops the search here); the verdicts travel to every
    trial and rank."""
    from dpda.train.preflight import check_inputs

    return check_inputs(space.base, source=space.source)


def max_concurrent(space: SearchSpace, cluster: dict[str, float]) -> int:
    """Trials that fit at once. Needed for multi-worker trials: their drivers reserve ~nothing,
    so without a cap Tune would start every trial and the Train runs would wait on each other."""
    settings = space.tune
    if settings.max_concurrent is not None:
        return settings.max_concurrent
    fits = []
    if settings.cpu > 0:
        fits.append(cluster.get("CPU", 0.0) // (settings.cpu * settings.workers))
    if settings.gpu > 0:
        fits.append(cluster.get("GPU", 0.0) // (settings.gpu * settings.workers))
    return max(1, int(min(fits)))


class FinishingASHA(ASHAScheduler):
    """ASHA with two changes. A trial that reaches max_t is left to end by itself, so the Trainer
    still averages its best epochs into model.pt (plain ASHA stops it at its last report). And on
    a resumed search, the rung values of the trials that ran before the interruption are replayed
    from their result.json (Tune does not save scheduler state), so later trials are judged
    against all earlier ones, as in an uninterrupted search."""

    def __init__(self, *args: Any, history_dir: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._history_dir = history_dir
        self._replayed = False

    def on_trial_add(self, tune_controller, trial) -> None:
        self._replay_history()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        self._replay_history()
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and result.get(self._time_attr, 0) >= self._max_t:
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action

    def _replay_history(self) -> None:
        if self._replayed:
            return
        self._replayed = True
        if not self._history_dir or is_uri(self._history_dir) or len(self._brackets) != 1:
            return
        bracket = self._brackets[0]
        for path in sorted(Path(self._history_dir).glob("trial_*/result.json")):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a trial killed mid-write leaves a truncated last line
                t, value = record.get(self._time_attr), record.get(self._metric)
                if isinstance(t, (int, float)) and isinstance(value, (int, float)) and "trial_id" in record:
                    bracket.on_result(_TrialRef(record["trial_id"]), t, self._metric_op * value)


@dataclass(frozen=True)
class _TrialRef:
    trial_id: str


def _scheduler(space: SearchSpace, history_dir: str | None) -> FinishingASHA:
    settings = space.tune
    return FinishingASHA(
        time_attr=TIME_ATTR, max_t=space.max_epochs(), grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor, history_dir=history_dir,
    )


def _trainable(space: SearchSpace, layout: dict[str, Any]):
    from ray import tune

    fn = tune.with_parameters(run_trial, space=space, layout=layout)
    settings = space.tune
    if settings.workers == 1:
        return tune.with_resources(fn, {"cpu": settings.cpu, "gpu": settings.gpu})
    # the trial only runs the Train driver; the workers reserve their own CPUs/GPUs
    return tune.with_resources(fn, {"cpu": 0.01})


def _callbacks(space: SearchSpace, exp_path: str, extra: Sequence[Any], remote: bool) -> list[Any]:
    """The caller's Tune callbacks, TensorBoard scalars per trial, plus TensorBoard HParams in a
    local experiment dir (and the driver's fault injection when $DPDA_TUNE_FAULT arms it)."""
    fault = None if remote else faults.driver_callback(exp_path)
    hparams = [] if remote else [hparams_callback(space, exp_path)]
    return [*extra, scalars_only_logger(), *hparams, *([fault] if fault else [])]


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the search as Ctrl-C does (Tune saves its state and returns) rather than
    killing the driver mid-save: it is passed on as SIGUSR1, Tune's other stop signal."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGUSR1))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_search(
    space: SearchSpace,
    *,
    storage: str | os.PathLike | Location | None = None,
    name: str | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    storage_filesystem: Any = None,
    checked: dict[str, dict[str, Any]] | None = None,
    locked: bool = False,
) -> SearchOutcome:
    """Run (or with `resume`, continue) the search; Ray must be initialised by the caller.
    `locked`: the caller holds `hold_experiment` of this experiment already and has run
    `check_experiment` under it (both before Ray starts, as `dpda tune` does): neither runs again.

    The experiment lives in `storage/name` (default runs/tune/<space name>): Tune's state and
    TensorBoard/CSV/JSON logs per trial, each trial's run dir (telemetry, checkpoints, model.pt),
    the Optuna study (optuna.db) and TensorBoard HParams (hparams/), plus results.csv and
    best_config.yaml written at the end. `callbacks` are extra Tune callbacks.
    `storage` is a local path, a URI (s3://bucket/x?endpoint_override=...) or a Location from
    `storage_location` (already checked); a path or URI is resolved and checked here, a missing
    bucket or a dead endpoint being one UserError. `storage_filesystem` (a pyarrow filesystem, e.g.
    S3FileSystem(endpoint_override=...)) makes `storage` a path on it, as in Ray's RunConfig. The
    corpora are checked here, once, before any trial starts (unless the caller did: `checked`);
    trials and ranks reuse the verdicts (dpda.data.check_cache).
    """
    store, name = _store_and_name(space, storage, name, storage_filesystem)
    exp = store.child(name)
    with ExitStack() as held:
        if not locked:
            held.enter_context(hold_experiment(exp))
            check_experiment(space, exp, resume)
        if exp.is_local:
            from dpda.tune.leftovers import record_current

            record_current(Path(exp.root))
        return _run_search(space, store, exp, name, not exp.is_local, resume, callbacks, verbose, checked)


def experiment_location(space: SearchSpace, storage: str | os.PathLike | Location | None = None,
                        name: str | None = None, storage_filesystem: Any = None) -> Location:
    """Where the search lives: `storage/name` (name default: the space's `name`), the storage
    resolved and checked (one UserError naming the URI) unless it is a Location already."""
    store, name = _store_and_name(space, storage, name, storage_filesystem)
    return store.child(name)


def _store_and_name(space: SearchSpace, storage: str | os.PathLike | Location | None, name: str | None,
                    storage_filesystem: Any) -> tuple[Location, str]:
    name = name or space.name
    problem = name_problem(name)
    if problem:
        raise UserError(f"experiment name {name!r}: {problem}")
    return (storage if isinstance(storage, Location) else storage_location(storage, storage_filesystem)), name


@contextmanager
def hold_experiment(exp: Location) -> Iterator[None]:
    """Hold a local experiment's lock for the whole search, and end the Ray processes that a killed
    driver of it left behind (dpda.tune.lock, dpda.tune.leftovers). Take it before Ray starts: a
    refused second driver then costs nothing. Object storage has no lock: nothing is held."""
    if not exp.is_local:
        yield
        return
    from dpda.tune.leftovers import end_previous
    from dpda.tune.lock import lock_experiment

    lock = lock_experiment(Path(exp.root))
    try:
        end_previous(Path(exp.root))
        yield
    finally:
        lock.release()


def check_experiment(space: SearchSpace, exp: Location, resume: bool, fingerprint: dict[str, Any] | None = None,
                     snapshot: str = SPACE_SNAPSHOT) -> None:
    """What needs no Ray, before it starts: a new search finds no experiment there; a resumed one
    finds it, with the same search space, a readable study, and every file that Tune's restore
    unpickles vouched for by the state manifest (dpda.tune.state_manifest). `dpda study` passes
    its own `fingerprint` (what must not change) and the `snapshot` file that holds it."""
    from dpda.tune import state_manifest
    from dpda.tune.resume import check_study_file
    from dpda.tune.study_files import STUDY_FILE

    exp_path = _shown(exp)
    exists = exp.child(state_manifest.TUNER_PKL).is_file()  # what Tuner.can_restore looks for
    if not resume:
        if exists:
            raise UserError(f"{exp_path}: experiment exists; pass --resume to continue it or --name for a new one")
        return
    if not exists:
        raise UserError(f"{exp_path}: no experiment to resume (run without --resume to start it)")
    stored = exp.child(snapshot).read_text()
    expected = _fingerprint(space) if fingerprint is None else fingerprint
    if stored is not None and json.loads(stored) != expected:
        raise UserError(
            f"{space.source}: the file changed since {exp_path} was started; "
            "resume with the original file or start a new experiment with --name"
        )
    if exp.is_local:  # before Tune or Optuna read anything of it
        check_study_file(Path(exp.root, STUDY_FILE))
    state_manifest.verify_experiment(exp.fs, exp.root)


def _run_search(space: SearchSpace, store: Location, exp: Location, name: str, remote: bool, resume: bool,
                callbacks: Sequence[Any], verbose: int, checked: dict | None) -> SearchOutcome:
    from dpda.tune.controller_hooks import hooked
    from dpda.tune.state_manifest import tagging

    fs = _ray_filesystem(exp)
    layout = {
        "driver_pid": os.getpid(),
        "fault_dir": None if remote else exp.root,  # fault injection's trial order (tests)
        "experiment": name,
        "cwd": os.getcwd(),
        "train_storage": exp.child(TRAIN_RUNS).root,
        "storage_filesystem": fs,
        "checked": checked if checked is not None else check_corpora(space),
    }
    trainable = _trainable(space, layout)
    # making the Tuner writes tuner.pkl, fit the other state files; hooked: the study and Tune's
    # saved state hold the same trials whenever the driver dies (dpda.tune.controller_hooks)
    with tagging(exp.fs, exp.root), hooked():
        tuner = _tuner(space, store, exp, name, remote, resume, trainable, callbacks, verbose)
        with _sigterm_interrupts():
            grid = tuner.fit()
    return summarise(space, grid, exp)


def _tuner(space: SearchSpace, store: Location, exp: Location, name: str, remote: bool, resume: bool,
           trainable: Any, callbacks: Sequence[Any], verbose: int) -> Any:
    """A new Tuner, or with `resume` the restored one (check_experiment vouched for its files)."""
    import optuna
    import ray
    from ray import tune

    from dpda.tune import resume as resumption

    fs = _ray_filesystem(exp)
    if resume:
        return tune.Tuner.restore(exp.root, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
    exp.child(SPACE_SNAPSHOT).write_text(json.dumps(_fingerprint(space), indent=2))
    settings = space.tune
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # metric/mode go to the searcher too: with a define-by-run space Tune does not pass them on;
    # several objectives make a multi-objective study (Tune's own metric, ASHA's, is the first)
    # the study lives in EXPERIMENT/optuna.db (optuna-dashboard opens it), not only inside Ray
    keys = [g.key for g in settings.goals]
    searcher = resumption.ReconciledOptunaSearch(space=space, metric=keys if len(keys) > 1 else keys[0],
                            mode=[settings.mode] * len(keys) if len(keys) > 1 else settings.mode,
                            sampler=optuna.samplers.TPESampler(seed=settings.seed),
                            study_name=name, storage=optuna_storage(exp.root, remote),
                            exp_dir=None if remote else exp.root)
    scheduler = _scheduler(space, None if remote else exp.root)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=settings.key, mode=settings.mode, search_alg=searcher, scheduler=scheduler,
            num_samples=settings.num_samples,
            max_concurrent_trials=max_concurrent(space, ray.cluster_resources()),
            trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=store.root, storage_filesystem=fs,
            callbacks=_callbacks(space, exp.root, callbacks, remote), verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=settings.max_failures if settings.workers == 1 else 0),
            # None: dpda prunes the storage itself (an older folder may hold an n-best epoch)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )


def _status(result: Any) -> str:
    """completed (the trial saved its model: its last report says so, dpda.train.trial_result),
    stopped early (ASHA, or an interrupted search), error, or not started."""
    if not result.metrics or TIME_ATTR not in result.metrics:
        return "error" if result.error is not None else "not started"
    return trial_status(result.metrics, result.error is not None)


def _trial_id(result: Any) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name.removeprefix("trial_")


def _tune_states(exp_path: str, filesystem: Any = None) -> dict[str, str]:
    """Tune's own trial states (TERMINATED, ERROR, RUNNING, PENDING, ...) from the saved state."""
    from ray.tune import ExperimentAnalysis

    try:
        return {t.trial_id: t.status for t in ExperimentAnalysis(exp_path, storage_filesystem=filesystem).trials}
    except Exception:  # no state written yet (interrupted before the first trial started)
        return {}


def trial_conflicts(experiment: Location) -> dict[str, float]:
    """Each trial's whole-run conflict fraction, from its telemetry, as the report computes it
    (dpda_analysis.queries.conflict_by_trial); empty when there is none to read."""
    import warnings

    from dpda_analysis import conflict_by_trial, open_telemetry

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_telemetry(experiment.root if experiment.is_local else str(experiment)) as tel:
                table = conflict_by_trial(tel)
    except Exception:  # no telemetry (disabled, or nothing written yet): the column stays empty
        return {}
    return {str(t): float(v) for t, v in zip(table["trial_id"], table["conflict_fraction"])}


def results_table(space: SearchSpace, grid: Any, states: dict[str, str] | None = None,
                  conflicts: dict[str, float] | None = None):
    """One row per trial: id, status, epochs, its result (each objective: the saved model's dev
    metric, dpda.train.trial_result), the best epoch's dev EER, the conflict fraction of the whole
    trial (`conflict_fraction`, the report's) and of its last epoch, and the searched values as
    used. Completed trials first, best first."""
    import pandas as pd

    goals = [g.key for g in space.tune.goals]
    rows = []
    for result in grid:
        m = result.metrics or {}
        trial_id = _trial_id(result)
        status = _status(result)
        if states and states.get(trial_id) not in (None, "TERMINATED", "ERROR"):
            status = "interrupted"
        row: dict[str, Any] = {"trial_id": trial_id, "status": status, "epochs": m.get(TIME_ATTR)}
        row.update({key: m.get(key) for key in dict.fromkeys([*goals, model_key("eer")])})
        row.update({
            "selected_epoch": m.get("selected_epoch"),
            "best_dev_eer": m.get("best_dev_eer"),
            "conflict_fraction": (conflicts or {}).get(trial_id, math.nan),
            EPOCH_CONFLICT: m.get(EPOCH_CONFLICT),
        })
        for p in space.params:
            row[p.key] = (result.config or {}).get(p.key)
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table["_done"] = table["status"] != "completed"
        table = table.sort_values(
            ["_done", goals[0]], ascending=[True, space.tune.mode == "min"], na_position="last", kind="stable"
        ).drop(columns="_done").reset_index(drop=True)
    return table


def best_row(space: SearchSpace, table: Any) -> Any | None:
    """The search's best trial: the completed trial whose saved model has the best value of the
    first objective (a trial stopped early saved no model and is never the answer); None when no
    completed trial has a finite value."""
    key = space.tune.key
    if table.empty:
        return None
    done = table[(table["status"] == "completed") & table[key].map(
        lambda v: isinstance(v, int | float) and math.isfinite(v))]
    if done.empty:
        return None
    values = done[key].astype(float)
    return done.loc[values.idxmin() if space.tune.mode == "min" else values.idxmax()]


def pareto_front(space: SearchSpace, table: Any) -> Any:
    """The completed trials that no other completed trial matches or beats on every objective
    while beating it on one (non-dominated), in the table's order (the first objective's): the
    answer of a search with several objectives. Optuna's `study.best_trials`, computed from the
    results, so that object storage (no study file) has it too."""
    keys = [g.key for g in space.tune.goals]
    done = table[table["status"] == "completed"].dropna(subset=keys)
    values = done[keys].to_numpy(float) * (1.0 if space.tune.mode == "min" else -1.0)
    better_or_equal = (values[:, None, :] <= values[None, :, :]).all(axis=2)
    strictly = (values[:, None, :] < values[None, :, :]).any(axis=2)
    dominated = (better_or_equal & strictly).any(axis=0)
    return done[~dominated].reset_index(drop=True)


def summarise(space: SearchSpace, grid: Any, experiment: str | os.PathLike | Location,
              filesystem: Any = None) -> SearchOutcome:
    """Table, best trial (dpda.tune.objectives: the completed trial with the best first
    objective), the Pareto front with several objectives, and files in the experiment dir (a local
    path, a URI, a Location, or a path on `filesystem`): results.csv, pareto.csv, best_config.yaml."""
    from dpda.tune.state_manifest import verify_experiment

    exp = resolve(experiment, filesystem)
    exp_path = _shown(exp)
    verify_experiment(exp.fs, exp.root)  # ExperimentAnalysis unpickles Tune's newest state file
    states = _tune_states(exp.root, _ray_filesystem(exp))
    table = results_table(space, grid, states, trial_conflicts(exp))
    exp.child(RESULTS_CSV).write_text(table.to_csv(index=False))
    pareto = pareto_front(space, table) if len(space.tune.goals) > 1 and not table.empty else None
    if pareto is not None:
        exp.child(PARETO_CSV).write_text(pareto.to_csv(index=False))
    unfinished = not table.empty and table["status"].isin(["interrupted", "not started"]).any()
    interrupted = bool(len(grid) < space.tune.num_samples or unfinished)
    failed = int((table["status"] == "error").sum()) if not table.empty else 0
    best = best_row(space, table)
    if best is None:  # a failed search must not look like a finished one
        return SearchOutcome(exp_path, table, None, None, None, None, interrupted, failed, pareto)
    trial_id, value = str(best["trial_id"]), float(best[space.tune.key])
    config = space.trial_config(next(r.config for r in grid if _trial_id(r) == trial_id) or {})
    stored_model = exp.child(f"trial_{trial_id}", "model.pt")
    model = _shown(stored_model) if stored_model.is_file() else None
    outcome = SearchOutcome(exp_path, table, trial_id, value, config, model, interrupted, failed, pareto)
    if interrupted or failed:  # best so far, not the search's answer: no best_config.yaml until it ends
        return outcome
    goal = space.tune.goals[0]
    several = (f"# {len(space.tune.goals)} objectives: the best by the first; the Pareto front is in {PARETO_CSV}.\n"
               if pareto is not None else "")
    header = (
        f"# Best trial of {exp_path}: {trial_id}, {goal.key} {value:.6g} ({space.tune.mode}; "
        f"{goal.label} of the model it saved).\n{several}"
        f"# Train it again with: dpda train {BEST_CONFIG}\n"
    )
    exp.child(BEST_CONFIG).write_text(header + yaml.safe_dump(config, sort_keys=False))
    return outcome


def format_outcome(space: SearchSpace, outcome: SearchOutcome) -> str:
    """The text the CLI prints at the end: results table, best trial and its searched values."""
    import pandas as pd

    lines = [f"Results ({len(outcome.table)} trials) in {outcome.experiment_path}:"]
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 24):
        shown = outcome.table.rename(columns=lambda c: c.rsplit(".", 1)[-1] if "." in c else c)
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if outcome.best_config is None:
        lines.append("No trial saved a model with a finite " + space.tune.key + ".")
        return "\n".join(lines)
    unfinished = outcome.interrupted or outcome.failed
    lines.append(f"Best trial{' so far' if unfinished else ''} {outcome.best_trial_id}: "
                 f"{space.tune.key} = {outcome.best_metric:.4g} (the {space.tune.goals[0].label} of its saved model)")
    from dpda.dotted import get_dotted, has_dotted

    for p in space.params:
        if has_dotted(outcome.best_config, p.key):
            lines.append(f"  {p.key}: {get_dotted(outcome.best_config, p.key)}")
    if not unfinished:
        lines.append(f"Best config: {experiment_path(outcome.experiment_path, BEST_CONFIG)}")
    if outcome.pareto is not None:
        lines.append(f"Pareto front ({len(outcome.pareto)} trials, {len(space.tune.goals)} objectives): "
                     f"{experiment_path(outcome.experiment_path, PARETO_CSV)}")
    if outcome.best_model:
        lines.append(f"Best model:  {outcome.best_model}")
    return "\n".join(lines)


def unfinished_message(outcome: SearchOutcome) -> str | None:
    """Why the search is not done (interrupted, or trials that failed), or None when it is."""
    if outcome.interrupted:
        return (f"{outcome.experiment_path}: the search was interrupted before its last trial ended; "
                "no best_config.yaml written; continue it with --resume")
    if outcome.failed and outcome.best_config is not None:
        return (f"{outcome.experiment_path}: {outcome.failed} trial(s) failed (error.txt in their folders); "
                "no best_config.yaml written; --resume runs them again")
    return None
