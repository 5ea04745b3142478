"""Ray Tune + Optuna search over a `SearchSpace`, with ASHA early stopping on dev EER per epoch.

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
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from dpda_analysis.evaluation import SEARCH_SPACE_FILE

from dpda.errors import UserError
from dpda.train.checkpoint_store import CheckpointUpdate, StoredCheckpoints
from dpda.train.run_sync import RunMirror, mirrored, trial_destination
from dpda.tune.search_space import SearchSpace
from dpda.tune.study_files import hparams_callback, optuna_storage

TIME_ATTR = "epoch"
SPACE_SNAPSHOT = SEARCH_SPACE_FILE  # the report reads the searched keys and their scales from it
RESULTS_CSV = "results.csv"
BEST_CONFIG = "best_config.yaml"
TRAIN_RUNS = "train_runs"  # Ray Train storage of multi-worker trials, inside the experiment dir


@dataclass(frozen=True)
class SearchOutcome:
    """What a finished search produced (also written to the experiment dir)."""

    experiment_path: str
    table: Any  # pandas.DataFrame, one row per trial
    best_trial_id: str | None
    best_metric: float | None
    best_config: dict[str, Any] | None
    best_model: str | None
    interrupted: bool


# ----------------------------------------------------------------------------- trial side

def trial_name(trial: Any) -> str:
    """Short trial names and dirs (the default embeds every parameter: unreadable here)."""
    return f"trial_{trial.trial_id}"


def _tune_report(metrics: dict[str, Any], update: CheckpointUpdate | None, mirror: RunMirror | None = None) -> None:
    """Report an epoch to Tune with only the files it changed, then prune the trial's storage
    to last.pt + the n best epochs (dpda.train.checkpoint_store). With object storage the run
    dir's new files are uploaded first (dpda.train.run_sync): what is reported is stored."""
    import ray.tune

    if mirror is not None:
        mirror.sync()
    checkpoint = ray.tune.Checkpoint.from_directory(str(update.directory)) if update else None
    ray.tune.report(dict(metrics), checkpoint=checkpoint)
    if update is not None:
        storage = ray.tune.get_context().get_storage()
        StoredCheckpoints(storage.storage_filesystem, storage.trial_fs_path).prune(update.keep)


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
            with mirrored(mirror):
                Trainer(cfg, run_dir, report_fn=functools.partial(_tune_report, mirror=mirror),
                        run_id=layout["experiment"], trial_id=trial_id, resume_from=resume, progress=False,
                        checkpoint_dir=scratch / "checkpoints", checked=layout.get("checked")).fit()
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

def experiment_path(storage: str, name: str) -> str:
    return storage.rstrip("/") + "/" + name


def _is_uri(path: str) -> bool:
    return "://" in path


def _storage(storage: str | os.PathLike | None, filesystem: Any = None) -> str:
    if storage is None:
        return str(Path("runs/tune").resolve())
    storage = str(storage)
    if filesystem is not None:  # a path on that filesystem (e.g. "bucket/results" on S3)
        return storage
    return storage if _is_uri(storage) else str(Path(storage).expanduser().resolve())


def _resolve(path: str, filesystem: Any = None):
    """(pyarrow filesystem, path on it) for a local path, a storage URI, or a path on `filesystem`."""
    import pyarrow.fs

    if filesystem is not None:
        return filesystem, path
    if _is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), str(Path(path).resolve())


def _fingerprint(space: SearchSpace) -> dict[str, Any]:
    """What must not change between an interrupted search and its resumption."""
    return json.loads(json.dumps({
        "base": space.base,
        "params": [dataclasses.asdict(p) for p in space.params],
        "metric": space.tune.metric, "mode": space.tune.mode, "workers": space.tune.workers,
    }, default=str))


def _write_text(path: str, text: str, filesystem: Any = None) -> None:
    """Write to a local path, a storage URI (s3://, gs://) or a path on `filesystem`."""
    if not _is_uri(path) and filesystem is None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        return
    fs, inner = _resolve(path, filesystem)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as f:
        f.write(text.encode())


def _exists(path: str, filesystem: Any = None) -> bool:
    """Whether a file exists at a local path, a storage URI or a path on `filesystem`."""
    import pyarrow.fs

    fs, inner = _resolve(path, filesystem)
    return fs.get_file_info(inner).type == pyarrow.fs.FileType.File


def _read_text(path: str, filesystem: Any = None) -> str | None:
    if not _is_uri(path) and filesystem is None:
        return Path(path).read_text() if Path(path).exists() else None
    import pyarrow.fs

    fs, inner = _resolve(path, filesystem)
    if fs.get_file_info(inner).type == pyarrow.fs.FileType.NotFound:
        return None
    with fs.open_input_stream(inner) as f:
        return f.read().decode()


def check_corpora(space: SearchSpace) -> dict[str, dict[str, Any]]:
    """Check the corpora of the space's base config once, in the driver, before any trial starts
    (a failing corpus stops the search here); the verdicts travel to every trial and rank."""
    from dpda.data.check_cache import check_config_corpora
    from dpda.train.config import config_from_dict

    return check_config_corpora(config_from_dict(space.base, source=space.source).to_dict())


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
        if not self._history_dir or _is_uri(self._history_dir) or len(self._brackets) != 1:
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


def _scheduler(space: SearchSpace, history_dir: str) -> FinishingASHA:
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
    """The caller's Tune callbacks, plus TensorBoard HParams per trial in a local experiment dir."""
    return [*extra, *([] if remote else [hparams_callback(space, exp_path)])]


def run_search(
    space: SearchSpace,
    *,
    storage: str | os.PathLike | None = None,
    name: str | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    storage_filesystem: Any = None,
    checked: dict[str, dict[str, Any]] | None = None,
) -> SearchOutcome:
    """Run (or with `resume`, continue) the search; Ray must be initialised by the caller.

    The experiment lives in `storage/name` (default runs/tune/<space name>): Tune's state and
    TensorBoard/CSV/JSON logs per trial, each trial's run dir (telemetry, checkpoints, model.pt),
    the Optuna study (optuna.db) and TensorBoard HParams (hparams/), plus results.csv and
    best_config.yaml written at the end. `callbacks` are extra Tune callbacks.
    `storage_filesystem` (a pyarrow filesystem, e.g. S3FileSystem(endpoint_override=...)) makes
    `storage` a path on it, as in Ray's RunConfig. The corpora are checked here, once, before any
    trial starts (unless the caller did: `checked`); trials and ranks reuse the verdicts
    (dpda.data.check_cache).
    """
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    fs = storage_filesystem
    storage_path = _storage(storage, fs)
    name = name or space.name
    exp_path = experiment_path(storage_path, name)
    remote = _is_uri(exp_path) or fs is not None  # object storage: no local study file, no HParams folder
    layout = {
        "experiment": name,
        "cwd": os.getcwd(),
        "train_storage": experiment_path(exp_path, TRAIN_RUNS),
        "storage_filesystem": fs,
        "checked": checked if checked is not None else check_corpora(space),
    }
    trainable = _trainable(space, layout)
    snapshot_path = experiment_path(exp_path, SPACE_SNAPSHOT)
    exists = tune.Tuner.can_restore(exp_path, storage_filesystem=fs)
    if resume:
        if not exists:
            raise UserError(f"{exp_path}: no experiment to resume (run without --resume to start it)")
        stored = _read_text(snapshot_path, fs)
        if stored is not None and json.loads(stored) != _fingerprint(space):
            raise UserError(
                f"{space.source}: the search space changed since {exp_path} was started; "
                "resume with the original file or start a new experiment with --name"
            )
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=fs)
    else:
        if exists:
            raise UserError(f"{exp_path}: experiment exists; pass --resume to continue it or --name for a new one")
        _write_text(snapshot_path, json.dumps(_fingerprint(space), indent=2), fs)
        settings = space.tune
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # metric/mode go to the searcher too: with a define-by-run space Tune does not pass them on
        # the study lives in EXPERIMENT/optuna.db (optuna-dashboard opens it), not only inside Ray
        searcher = OptunaSearch(space=space, metric=settings.metric, mode=settings.mode,
                                sampler=optuna.samplers.TPESampler(seed=settings.seed),
                                study_name=name, storage=optuna_storage(exp_path, remote))
        scheduler = _scheduler(space, exp_path)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                metric=settings.metric, mode=settings.mode, search_alg=searcher, scheduler=scheduler,
                num_samples=settings.num_samples,
                max_concurrent_trials=max_concurrent(space, ray.cluster_resources()),
                trial_name_creator=trial_name, trial_dirname_creator=trial_name,
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                name=name, storage_path=storage_path, storage_filesystem=fs,
                callbacks=_callbacks(space, exp_path, callbacks, remote), verbose=verbose,
                failure_config=tune.FailureConfig(max_failures=settings.max_failures if settings.workers == 1 else 0),
                # None: dpda prunes the storage itself (an older folder may hold an n-best epoch)
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
            ),
        )
    grid = tuner.fit()
    return summarise(space, grid, exp_path, fs)


def _status(result: Any, remote: bool = False) -> str:
    """completed (the Trainer finished and wrote model.pt), stopped early (ASHA, or an
    interrupted search), error, or not started. Tune's own `done` flag is set in both of the
    first two cases, so the Trainer's model.pt decides; on URI storage it cannot be checked."""
    if result.error is not None:
        return "error"
    if not result.metrics or TIME_ATTR not in result.metrics:
        return "not started"
    if remote or not result.path or _is_uri(result.path):
        return "finished"
    return "completed" if (Path(result.path) / "model.pt").exists() else "stopped early"


def _tune_states(exp_path: str, filesystem: Any = None) -> dict[str, str]:
    """Tune's own trial states (TERMINATED, ERROR, RUNNING, PENDING, ...) from the saved state."""
    from ray.tune import ExperimentAnalysis

    try:
        return {t.trial_id: t.status for t in ExperimentAnalysis(exp_path, storage_filesystem=filesystem).trials}
    except Exception:  # no state written yet (interrupted before the first trial started)
        return {}


def results_table(space: SearchSpace, grid: Any, states: dict[str, str] | None = None, remote: bool = False):
    """One row per trial: id, status, epochs, metrics, and the active searched parameters."""
    import pandas as pd

    rows = []
    for result in grid:
        m = result.metrics or {}
        trial_id = m.get("trial_id") or Path(result.path).name.removeprefix("trial_")
        status = _status(result, remote)
        if states and states.get(trial_id) not in (None, "TERMINATED", "ERROR"):
            status = "interrupted"
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "status": status,
            "epochs": m.get(TIME_ATTR),
            space.tune.metric: m.get(space.tune.metric),
            "best_dev_eer": m.get("best_dev_eer"),
            "dev_loss": m.get("dev_loss"),
            "conflict_fraction": m.get("conflict_fraction"),
        }
        for p in space.params:
            row[p.key] = (result.config or {}).get(p.key)
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(
            space.tune.metric, ascending=space.tune.mode == "min", na_position="last", kind="stable"
        ).reset_index(drop=True)
    return table


def summarise(space: SearchSpace, grid: Any, exp_path: str, filesystem: Any = None) -> SearchOutcome:
    """Table, best trial (best epoch of any trial by the tune metric), files in the experiment dir."""
    states = _tune_states(exp_path, filesystem)
    table = results_table(space, grid, states, remote=filesystem is not None)
    _write_text(experiment_path(exp_path, RESULTS_CSV), table.to_csv(index=False), filesystem)
    unfinished = not table.empty and table["status"].isin(["interrupted", "not started"]).any()
    interrupted = bool(len(grid) < space.tune.num_samples or unfinished)
    try:
        best = grid.get_best_result(metric=space.tune.metric, mode=space.tune.mode, scope="all",
                                    filter_nan_and_inf=True)
    except (RuntimeError, KeyError, ValueError):
        best = None
    if best is None or not best.metrics:
        return SearchOutcome(exp_path, table, None, None, None, None, interrupted)
    config = space.trial_config(best.config)
    history = best.metrics_dataframe
    column = space.tune.metric
    value = float(history[column].min() if space.tune.mode == "min" else history[column].max()) \
        if history is not None and column in history else float(best.metrics.get(column, math.nan))
    if not math.isfinite(value):  # a failed search must not look like a finished one
        return SearchOutcome(exp_path, table, None, None, None, None, interrupted)
    trial_id = best.metrics.get("trial_id")
    model = str(Path(best.path) / "model.pt") if best.path else None
    if model and not _exists(model, filesystem):
        model = None
    header = (
        f"# Best trial of {exp_path}: {trial_id}, {column} {value:.6g} ({space.tune.mode}).\n"
        f"# Train it again with: dpda train {BEST_CONFIG}\n"
    )
    _write_text(experiment_path(exp_path, BEST_CONFIG), header + yaml.safe_dump(config, sort_keys=False), filesystem)
    return SearchOutcome(exp_path, table, trial_id, value, config, model, interrupted)


def format_outcome(space: SearchSpace, outcome: SearchOutcome) -> str:
    """The text the CLI prints at the end: results table, best trial and its searched values."""
    import pandas as pd

    lines = [f"Results ({len(outcome.table)} trials) in {outcome.experiment_path}:"]
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 24):
        shown = outcome.table.rename(columns=lambda c: c.rsplit(".", 1)[-1] if "." in c else c)
        lines.append(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if outcome.best_config is None:
        lines.append("No trial reported a finite " + space.tune.metric + ".")
        return "\n".join(lines)
    lines.append(f"Best trial {outcome.best_trial_id}: {space.tune.metric} = {outcome.best_metric:.4g}")
    from dpda.dotted import get_dotted, has_dotted

    for p in space.params:
        if has_dotted(outcome.best_config, p.key):
            lines.append(f"  {p.key}: {get_dotted(outcome.best_config, p.key)}")
    lines.append(f"Best config: {experiment_path(outcome.experiment_path, BEST_CONFIG)}")
    if outcome.best_model:
        lines.append(f"Best model:  {outcome.best_model}")
    if outcome.interrupted:
        lines.append("The search was interrupted; continue it with --resume.")
    return "\n".join(lines)
