"""Files a search leaves for tools outside Ray: the Optuna study as SQLite, which optuna-dashboard
opens (`optuna-dashboard sqlite:///EXPERIMENT/optuna.db`), and TensorBoard HParams
(`tensorboard --logdir EXPERIMENT`, or `--logdir EXPERIMENT/hparams`: the HParams tab compares
trials by their searched values and results).

Why: without a storage, Ray's OptunaSearch keeps the study in memory (pickled inside Tune's
state), so no Optuna tool can read it. Ray's TensorBoard logger writes HParams per trial, and
TensorBoard takes the column list from whichever trial it reads first: with conditional
parameters that trial lacked some (a rule-`none` trial had no strength, beta or c columns), it
skipped trials with an inactive key, and the trials it did write showed twice beside these. So
dpda declares the whole search space once (EXPERIMENT/hparams: every searched key with its
domain, and the metrics), writes one session per trial below it (its status: completed,
stopped early, error), and Ray's logger writes only scalars (`scalars_only_logger`). Both are for
local experiment dirs; on a storage URI (s3://, gs://) neither is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dpda.train.trial_result import EPOCH_CONFLICT, model_key, saved
from dpda.tune.search_space import SearchSpace

STUDY_FILE = "optuna.db"
HPARAMS_DIR = "hparams"
METRIC_PREFIX = "final/"  # a session's metrics: the trial's last report, under these tags
STATUS_KEY = "status"  # an HParams column beside the searched keys: completed / stopped early / error
STATUSES = ("completed", "stopped early", "error")


def study_url(exp_path: str) -> str:
    """The SQLAlchemy URL of the experiment's study file (what optuna and optuna-dashboard take)."""
    return f"sqlite:///{Path(exp_path, STUDY_FILE)}"


def optuna_storage(exp_path: str, is_uri: bool) -> Any | None:
    """An Optuna RDB storage in the experiment dir; None on a storage URI."""
    if is_uri:
        return None
    import optuna

    Path(exp_path).mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(study_url(exp_path))


def dashboard_command(exp_path: str) -> str:
    return f"optuna-dashboard {study_url(exp_path)}"


def _scalar(value: Any) -> Any | None:
    """A value TensorBoard's HParams can hold (number, string, bool), else None."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def hparam_metrics(space: SearchSpace) -> tuple[str, ...]:
    """The reported keys each session holds: the objectives' values (the trial's result), the
    saved model's dev EER, the best epoch's, the last epoch's conflict fraction, the epochs run."""
    goals = [g.key for g in space.tune.goals]
    rest = [model_key("eer"), "best_dev_eer", EPOCH_CONFLICT, "epoch"]
    return tuple(dict.fromkeys(goals + rest))


def trial_hparams(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """The searched values of one trial under their config keys, as used; inactive conditionals
    are left out (TensorBoard shows them as empty)."""
    out = {}
    for p in space.params:
        value = _scalar(config.get(p.key))
        if value is not None:
            out[p.key] = value
    return out


def _summary(field: str, message: Any) -> Any:
    """One HParams plugin summary (`_hparams_/experiment`, `session_start_info`, ...)."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata

    content = HParamsPluginData(version=0, **{field: message}).SerializeToString()
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="hparams", content=content))
    return Summary(value=[Summary.Value(tag=f"_hparams_/{field}", metadata=meta)])


def _kind(values: list[Any]) -> str:
    """The HParams data type of a list of values: one type for all, else unset."""
    if all(isinstance(v, bool) for v in values):
        return "DATA_TYPE_BOOL"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "DATA_TYPE_FLOAT64"
    if all(isinstance(v, str) for v in values):
        return "DATA_TYPE_STRING"
    return "DATA_TYPE_UNSET"


def _hparam_info(name: str, values: list[Any] | None = None, interval: tuple[float, float] | None = None) -> Any:
    from google.protobuf.struct_pb2 import ListValue
    from tensorboardX.proto.api_pb2 import DataType, HParamInfo, Interval

    if interval is not None:
        return HParamInfo(name=name, type=DataType.Value("DATA_TYPE_FLOAT64"),
                          domain_interval=Interval(min_value=float(interval[0]), max_value=float(interval[1])))
    kind = _kind(values or [])
    if kind == "DATA_TYPE_UNSET":
        return HParamInfo(name=name, type=DataType.Value(kind))
    domain = ListValue()
    domain.extend([float(v) if kind == "DATA_TYPE_FLOAT64" else v for v in values])
    return HParamInfo(name=name, type=DataType.Value(kind), domain_discrete=domain)


def experiment_summary(space: SearchSpace) -> Any:
    """The HParams experiment: every searched key with its domain (a choice's values, a numeric
    key's range; an offset key's range follows its partner's), the status column, the metrics."""
    from tensorboardX.proto.api_pb2 import Experiment, MetricInfo, MetricName

    infos = []
    for p in space.params:
        infos.append(_hparam_info(p.key, values=list(p.choices)) if p.kind == "choice"
                     else _hparam_info(p.key, interval=space.value_range(p.key)))
    infos.append(_hparam_info(STATUS_KEY, values=list(STATUSES)))
    metrics = [MetricInfo(name=MetricName(tag=METRIC_PREFIX + k)) for k in hparam_metrics(space)]
    return _summary("experiment", Experiment(hparam_infos=infos, metric_infos=metrics))


def _writer(logdir: Path) -> Any:
    from tensorboardX import SummaryWriter

    return SummaryWriter(logdir=str(logdir))


def write_experiment(exp_path: str, space: SearchSpace) -> Path:
    """Declare the search space to TensorBoard once, in EXPERIMENT/hparams (a resumed search
    finds it there and writes nothing)."""
    logdir = Path(exp_path, HPARAMS_DIR)
    if not list(logdir.glob("events.out.tfevents.*")):
        writer = _writer(logdir)
        try:
            writer.file_writer.add_summary(experiment_summary(space))
        finally:
            writer.close()
    return logdir


def write_hparams(exp_path: str, trial_id: str, hparams: dict[str, Any], result: dict[str, Any],
                  status: str, metrics: tuple[str, ...]) -> Path:
    """One HParams session for a trial below EXPERIMENT/hparams/trial_<id>: its searched values
    and `status`, the last report's `metrics`, and a session end (success when completed,
    failure on error, unknown when stopped early: TensorBoard has no "stopped")."""
    from tensorboardX.proto.api_pb2 import Status
    from tensorboardX.proto.plugin_hparams_pb2 import SessionEndInfo, SessionStartInfo

    start = SessionStartInfo(group_name=f"trial_{trial_id}")
    for key, value in {**hparams, STATUS_KEY: status}.items():
        if isinstance(value, bool):
            start.hparams[key].bool_value = value
        elif isinstance(value, str):
            start.hparams[key].string_value = value
        else:
            start.hparams[key].number_value = float(value)
    end = {"completed": "STATUS_SUCCESS", "error": "STATUS_FAILURE"}.get(status, "STATUS_UNKNOWN")
    logdir = Path(exp_path, HPARAMS_DIR, f"trial_{trial_id}")
    writer = _writer(logdir)
    try:
        writer.file_writer.add_summary(_summary("session_start_info", start))
        step = int(result.get("epoch") or 0)
        for key in metrics:  # the HParams table reads a session's metrics from these scalars
            value = _scalar(result.get(key))
            if value is not None and not isinstance(value, bool | str):
                writer.add_scalar(METRIC_PREFIX + key, float(value), global_step=step)
        writer.file_writer.add_summary(_summary("session_end_info", SessionEndInfo(status=Status.Value(end))))
    finally:
        writer.close()
    return logdir


def trial_status(result: dict[str, Any] | None, error: bool) -> str:
    """completed (it saved its model: dpda.train.trial_result), stopped early, or error."""
    return "error" if error else "completed" if saved(result) else "stopped early"


def hparams_callback(space: SearchSpace, exp_path: str):
    """A Tune callback declaring the search space at the search's start and writing each ended
    trial's HParams session (completed, stopped early or failed)."""
    from ray.tune import Callback

    metrics = hparam_metrics(space)

    class HParamsCallback(Callback):
        def setup(self, **info: Any) -> None:
            write_experiment(exp_path, space)

        def _write(self, trial: Any, error: bool) -> None:
            result = trial.last_result or {}
            if not result and not error:
                return
            write_hparams(exp_path, trial.trial_id, trial_hparams(space, dict(trial.config or {})), result,
                          trial_status(result, error), metrics)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, error=False)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial, error=True)

    return HParamsCallback()


def scalars_only_logger():
    """Ray's TensorBoard logger (each trial's reported metrics as scalars in its folder) without
    its HParams: those are declared once by dpda (above), so TensorBoard on the experiment
    folder shows each trial once. Passed to Tune, it stands in for Ray's default one."""
    from ray.tune.logger import TBXLoggerCallback

    class ScalarsOnly(TBXLoggerCallback):
        def _try_log_hparams(self, trial: Any, result: dict) -> None:
            return None

    return ScalarsOnly()
