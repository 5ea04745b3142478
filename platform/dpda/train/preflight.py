"""What a run reads, checked once before anything starts: the corpora and the augmentation's banks.

Why one function: a driver (`dpda tune`'s pre-flight before Ray starts, a multi-worker `dpda
train`) must refuse a bad corpus or bank in one line before any trial or rank starts, and hand
every check's verdict to them so none decodes the same files again.
"""

from __future__ import annotations

from typing import Any

from dpda.augment.pipeline import prepare_transforms
from dpda.data.check_cache import check_config_corpora
from dpda.train.config import TrainConfig, config_from_dict


def check_inputs(config: TrainConfig | dict[str, Any], source: str = "<config>") -> dict[str, dict[str, Any]]:
    """Verdicts (fingerprint -> dict) of every corpus set and every bank the config names; a bad
    one raises UserError naming its config key (`data.train[0]`, `augment.pipeline.steps[0].noise.bank`)."""
    cfg = config if isinstance(config, TrainConfig) else config_from_dict(config, source=source)
    checked = check_config_corpora(cfg.to_dict())
    if cfg.augment.mode != "none":
        for root in cfg.augment.path_transforms.values():
            checked.update(prepare_transforms(root, cfg.data.check))
    return checked
