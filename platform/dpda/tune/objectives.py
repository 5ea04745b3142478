"""What a search optimises: one or more objectives, each a dev metric of the model a trial saves.

Why: the field reports EER beside minDCF, actDCF and Cllr (ASVspoof 5), and a detector may be
tuned on more than one of them at once. An objective names a metric and the set it is scored on
(`tune.objectives: [{metric: eer}, {metric: min_dcf}]`); its value in a trial is the trial's
result as dpda.train.trial_result defines it (`model_dev_<metric>`), the one number Tune, ASHA,
Optuna, TensorBoard, results.csv and best_config.yaml read.

With one objective, the best trial is the completed trial with the best value. With several,
Optuna searches them together (multi-objective TPE); ASHA stops trials by the first; the answer
is the Pareto front (pareto.csv), and best_config.yaml holds the first objective's best trial.

`set: dev` is `data.dev` (all its corpora pooled), the set each epoch is scored on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from dpda.errors import UserError
from dpda.train.trial_result import DEV_METRICS, model_key
from dpda.typed import Settings

Metric = Literal["loss", "eer", "min_dcf", "act_dcf", "cllr"]
assert set(Metric.__args__) == set(DEV_METRICS)  # one list: the dev metrics the Trainer scores
_ALIASES = {"mindcf": "min_dcf", "actdcf": "act_dcf"}


class Objective(Settings):
    """One objective: `metric` of the saved model on `set`; lower is better for all of them."""

    model_config = ConfigDict(frozen=True)

    metric: Metric
    set: Literal["dev"] = "dev"

    @property
    def key(self) -> str:
        """The reported key holding a trial's value (`model_dev_eer`)."""
        return model_key(self.metric)

    @property
    def label(self) -> str:
        return f"{self.set} {self.metric}"


def parse_metric(text: str, where: str = "tune.metric") -> Objective:
    """`dev_eer`, `eer` or `model_dev_eer` (and mindcf / actdcf) -> the objective on dev; any
    other value is one UserError line naming `where`."""
    name = text.strip().lower().replace("-", "_").removeprefix("model_").removeprefix("dev_")
    name = _ALIASES.get(name, name)
    if name not in DEV_METRICS:
        raise UserError(f"{where}: {text!r} is not a dev metric of the saved model; choose from "
                        + ", ".join(f"dev_{m}" for m in DEV_METRICS) + " (or tune.objectives for several)")
    return Objective(metric=name)
