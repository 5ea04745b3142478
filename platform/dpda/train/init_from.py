"""`model.init_from`: start a training run from a released or dpda checkpoint.

Why: fine-tuning a pretrained detector (the released AASIST, a published DPDA model, an earlier
dpda run) with any augmentation mode and rule is the quickest way to ask the paper's question on
a small machine. The weights must fit the run's model exactly (`model.name`, `model.preset`,
`model.overrides`), or the run stops before any step, in one line naming `model.init_from` and
the first key that does not fit; a released file must also be one of its layout's presets (the
released AASIST only into `released` / `released_l`, whose forward its weights were trained for).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dpda.errors import UserError
from dpda.models.published import FORMATS, detect_layout, model_from_published_state, published_tensors
from dpda.models.state_dict import load_weights
from dpda.train.checkpoint import TRAIN_STATE_FORMAT, load_checkpoint
from dpda.train.config import ModelConfig
from dpda.train.model_file import MODEL_FORMAT

DPDA_FORMATS = (MODEL_FORMAT, TRAIN_STATE_FORMAT)  # model.pt or a per-epoch file; last.pt


@torch.no_grad()
def init_model(model: nn.Module, cfg: ModelConfig) -> dict[str, Any]:
    """Load `cfg.init_from` (format `cfg.init_format`) into `model` (built from `cfg`); returns
    what the run records: absolute path, SHA-256, format and, for a released file, its layout."""
    path = Path(cfg.init_from or "").expanduser().resolve()
    where = f"model.init_from: {cfg.init_from}"
    if not path.is_file():
        raise UserError(f"{where}: no such checkpoint file")
    state = load_checkpoint(path)
    fmt = cfg.init_format
    tagged = isinstance(state, dict) and state.get("format") in DPDA_FORMATS
    if fmt == "auto":
        fmt = "dpda" if tagged else "released"
    with path.open("rb") as f:
        record: dict[str, Any] = {"path": str(path), "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
    if fmt == "dpda":
        if not tagged or "model" not in state:
            raise UserError(f"{where}: not a dpda model.pt or checkpoint (set model.init_format: published or aasist "
                            "for a released file)")
        load_weights(model, state["model"], where, f"the {cfg.name}:{cfg.preset} model of this config")
        return record | {"format": "dpda"}
    weights = published_tensors(state, where)
    if fmt == "released":
        fmt, _, _ = detect_layout(weights, where, None, **cfg.overrides)
    layout = FORMATS[fmt].get(cfg.name)
    if layout is None or cfg.preset not in layout.presets:
        fits = ", ".join(f"{name}:{p}" for name, lay in FORMATS[fmt].items() for p in lay.presets)
        raise UserError(f"{where}: {fmt} checkpoints start only {fits}; this config trains {cfg.name}:{cfg.preset}")
    loaded = model_from_published_state(weights, where, cfg.name, cfg.preset, fmt, **cfg.overrides)
    load_weights(model, loaded.state_dict(), where, f"the {cfg.name}:{cfg.preset} model of this config")
    return record | {"format": fmt}
