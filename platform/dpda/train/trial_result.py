"""A run's result, defined once: the dev metrics of the model the run saves.

Why one place: a search ranks trials in many tools (Tune and its ASHA scheduler, Optuna and
optuna-dashboard, TensorBoard's HParams, results.csv, best_config.yaml, the report, the
quickstart's printout). They named three different "best" trials while each read a number of
its own (the last epoch's dev EER, the lowest at any epoch, the saved model's). Every one of them
now reads the keys this module writes into what a run reports:

- each epoch: `model_dev_<metric>` = that dev metric of the best checkpoint so far (the epoch that
  `checkpoint.select_by` ranks first: what the run would save if it ended now; with
  `checkpoint.average_best: 1` exactly model.pt);
- once more at the end, marked `MODEL_SAVED`: the saved model.pt's own dev metrics (the average
  of the n best epochs, as summary.json's `final_dev_<metric>`).

With several corpora in data.dev, each entry is scored on its own too: `dev1_eer` is the EER on
`data.dev[1]` (objective set `dev[1]`), `model_dev1_eer` the trial's result there.

A trial that never sends the last report (stopped early by ASHA, or failed) saved no model: it is
PRUNED in Optuna, not a candidate for best_config.yaml, and "stopped early" everywhere.

The epoch's whole-model conflict fraction is reported as `conflict_fraction_last_epoch`: the name
`conflict_fraction` means the whole run's (the report's, dpda_analysis.queries), never one epoch's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

# the dev metrics each epoch scores (and the saved model's summary): dpda.metrics names, plus the loss
DEV_METRICS = ("loss", "eer", "min_dcf", "act_dcf", "cllr")
# scored on each entry of data.dev too (`dev[0]`, `dev[1]`, ...) when it lists several corpora
ENTRY_METRICS = ("eer", "min_dcf", "act_dcf", "cllr")
DEV = "dev"  # data.dev, all its corpora pooled
MODEL_SAVED = "model_saved"  # 1 in the report sent after model.pt was written
EPOCH_CONFLICT = "conflict_fraction_last_epoch"  # an epoch's conflict fraction, as reported
_DEV_SET = re.compile(r"dev(?:\[(\d+)\])?")
_DEV_KEY = re.compile(r"dev\d*_(?:" + "|".join(DEV_METRICS) + ")")


def entry_set(index: int) -> str:
    """The name of one entry of data.dev as an objective's `set` (`dev[1]`)."""
    return f"{DEV}[{index}]"


def dev_key(metric: str, dev_set: str = DEV) -> str:
    """An epoch's dev metric as the Trainer computes it: `dev_eer`, or `dev1_eer` on `dev[1]`."""
    match = _DEV_SET.fullmatch(dev_set)
    if match is None:
        raise ValueError(f"not a dev set: {dev_set!r} (dev, or dev[INDEX] for one entry of data.dev)")
    return f"{DEV}{match.group(1) or ''}_{metric}"


def model_key(metric: str, dev_set: str = DEV) -> str:
    """The trial's result for `metric`: the dev metric of the model it saves (`model_dev_eer`)."""
    return "model_" + dev_key(metric, dev_set)


def final_key(metric: str, dev_set: str = DEV) -> str:
    """The saved model's dev metric in summary.json (`final_dev_eer`)."""
    return "final_" + dev_key(metric, dev_set)


def is_dev_metric(key: str) -> bool:
    """Whether `key` is a dev metric the Trainer scores (`dev_eer`, `dev1_cllr`; not `dev_threshold`)."""
    return _DEV_KEY.fullmatch(key) is not None


def entry_rows(specs: Sequence[str], utts: Any, policy: str) -> list[Any]:
    """Per entry of data.dev (only when it lists several), a boolean mask over the dev manifest's
    utterances `utts` (a pandas Series): the rows that entry contributed. Each entry's manifest is
    read again (its check verdict is cached: nothing is decoded twice)."""
    if len(specs) < 2:
        return []
    from dpda.data.corpora import load_manifest

    return [utts.isin(load_manifest([spec], policy, f"data.dev[{i}]", keyed=True)["utt"]).to_numpy()
            for i, spec in enumerate(specs)]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _pooled_nan() -> dict[str, float]:
    return {model_key(m): math.nan for m in DEV_METRICS}


def epoch_report(metrics: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
                 best: Sequence[tuple[float, int]]) -> dict[str, Any]:
    """What one epoch reports: its metrics (the conflict fraction renamed to EPOCH_CONFLICT) and
    the running result, from the best checkpoint so far. `history`: the Trainer's per-epoch rows
    (0-based `epoch`, the dev metrics); `best`: its (selection value, epoch) list, best first."""
    out = {(EPOCH_CONFLICT if k == "conflict_fraction" else k): v for k, v in metrics.items()}
    selected = next((h for h in history if best and h["epoch"] == best[0][1]), {})
    out.update(_pooled_nan())
    out.update({"model_" + k: _number(v) for k, v in selected.items() if is_dev_metric(k)})
    out["selected_epoch"] = best[0][1] + 1 if best else None
    return out


def final_report(last: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """The report sent after model.pt was written: the last epoch's report with the running
    result replaced by the saved model's (summary.json), marked MODEL_SAVED."""
    out = dict(last)
    out.update({"epoch": summary.get("epochs", out.get("epoch")), MODEL_SAVED: 1})
    out.update(_pooled_nan())
    out.update({"model_" + k.removeprefix("final_"): _number(v) for k, v in summary.items()
                if k.startswith("final_") and is_dev_metric(k.removeprefix("final_"))})
    return out


def saved(result: Mapping[str, Any] | None) -> bool:
    """Whether a trial's last report is the one sent after it saved its model."""
    return bool(result) and bool(result.get(MODEL_SAVED))
