"""What a search optimises: one or more objectives, each a dev metric of the model a trial saves.

Why: the field reports EER beside minDCF, actDCF and Cllr (ASVspoof 5), and a detector may be
tuned on more than one of them at once. An objective names a metric and the set it is scored on
(`tune.objectives: [{metric: eer}, {metric: min_dcf}]`); its value in a trial is the trial's
result as dpda.train.trial_result defines it (`model_dev_<metric>`), the one number Tune, ASHA,
Optuna, TensorBoard, results.csv and best_config.yaml read.

With one objective, the best trial is the completed trial with the best value. With several,
Optuna searches them together (multi-objective TPE); ASHA stops trials by the first; the answer
is the Pareto front (pareto.csv), and best_config.yaml holds the first objective's best trial.

`set: dev` is `data.dev` (all its corpora pooled), the set each epoch is scored on; `set: dev[1]`
is its second entry alone (scored on its own each epoch when data.dev lists several corpora), so
a search can weigh, say, the EER on two dev corpora against each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ConfigDict, field_validator, model_validator

from dpda.errors import UserError
from dpda.train.trial_result import DEV, DEV_METRICS, ENTRY_METRICS, model_key
from dpda.typed import Settings

Metric = Literal["loss", "eer", "min_dcf", "act_dcf", "cllr"]
assert set(Metric.__args__) == set(DEV_METRICS)  # one list: the dev metrics the Trainer scores
_ALIASES = {"mindcf": "min_dcf", "actdcf": "act_dcf"}


class Objective(Settings):
    """One objective: `metric` of the saved model on `set`; lower is better for all of them."""

    model_config = ConfigDict(frozen=True)

    metric: Metric
    set: str = DEV

    @field_validator("set")
    @classmethod
    def _dev_set(cls, value: str) -> str:
        if re.fullmatch(r"dev(\[\d+\])?", value) is None:
            raise ValueError("must be dev (data.dev pooled) or dev[INDEX] (one entry of data.dev)")
        return value

    @model_validator(mode="after")
    def _scored(self) -> Objective:
        if self.set != DEV and self.metric not in ENTRY_METRICS:
            raise ValueError(f"{self.metric} is scored on the pooled dev set only (set: dev)")
        return self

    @property
    def entry(self) -> int | None:
        """The index into data.dev for `dev[i]`; None for the pooled set."""
        return None if self.set == DEV else int(self.set[4:-1])

    @property
    def key(self) -> str:
        """The reported key holding a trial's value (`model_dev_eer`, `model_dev1_eer`)."""
        return model_key(self.metric, self.set)

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


def check_sets(objectives: Sequence[Objective], base: Mapping[str, Any]) -> str | None:
    """Why an objective's `set: dev[i]` names no entry of the base config's data.dev (None when
    each does): with one corpus there, dev is the only set."""
    entries = len(((base.get("data") or {}).get("dev")) or [])
    for k, goal in enumerate(objectives):
        if goal.entry is not None and (entries < 2 or goal.entry >= entries):
            return (f"tune.objectives[{k}].set: {goal.set} is not one of the entries scored on their own "
                    f"(data.dev has {entries} corpus spec{'s' if entries != 1 else ''}; use set: dev"
                    + (f", or dev[0] .. dev[{entries - 1}]" if entries > 1 else "") + ")")
    return None
