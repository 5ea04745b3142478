"""Files a search leaves for tools outside Ray: the Optuna study as SQLite, which optuna-dashboard
opens (`optuna-dashboard sqlite:///EXPERIMENT/optuna.db`), and one TensorBoard HParams session per
trial (`tensorboard --logdir EXPERIMENT/hparams`: the HParams tab compares trials by their
searched values and final metrics).

Why: without a storage, Ray's OptunaSearch keeps the study in memory (pickled inside Tune's
state), so no Optuna tool can read it; and Ray's TensorBoard logger writes HParams only when no
value is None, which a search with conditional parameters always has. Both are for local
experiment dirs; on a storage URI (s3://, gs://) neither is written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dpda.tune.search_space import SearchSpace

STUDY_FILE = "optuna.db"
HPARAMS_DIR = "hparams"
# The last reported value of these goes into each trial's HParams session, when it is a number.
HPARAM_METRICS = ("dev_eer", "best_dev_eer", "dev_loss", "conflict_fraction", "epoch")


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


def trial_hparams(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """The searched values of one trial under their config keys; inactive conditionals are left
    out (TensorBoard shows them as empty), internal `:offset` widths are never searched keys."""
    out = {}
    for p in space.params:
        value = _scalar(config.get(p.key))
        if value is not None:
            out[p.key] = value
    return out


def write_hparams(exp_path: str, trial_id: str, hparams: dict[str, Any], result: dict[str, Any]) -> Path:
    """One HParams session for a trial below EXPERIMENT/hparams/<trial_id>."""
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams as hparams_summary

    metrics = {f"final/{k}": float(v) for k in HPARAM_METRICS if (v := _scalar(result.get(k))) is not None
               and not isinstance(v, bool | str)}
    logdir = Path(exp_path, HPARAMS_DIR, f"trial_{trial_id}")
    writer = SummaryWriter(logdir=str(logdir))
    try:
        for tag in hparams_summary(hparam_dict=hparams, metric_dict=metrics):
            writer.file_writer.add_summary(tag)
        for key, value in metrics.items():  # the HParams table reads metrics from these scalars
            writer.add_scalar(key, value, global_step=int(result.get("epoch") or 0))
    finally:
        writer.close()
    return logdir


def hparams_callback(space: SearchSpace, exp_path: str):
    """A Tune callback writing each ended trial's HParams session (finished, stopped or failed)."""
    from ray.tune import Callback

    class HParamsCallback(Callback):
        def _write(self, trial: Any) -> None:
            result = trial.last_result or {}
            if not result:
                return
            write_hparams(exp_path, trial.trial_id, trial_hparams(space, dict(trial.config or {})), result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._write(trial)

    return HParamsCallback()

