"""The trained-model file (`model.pt`): weights, the config that built them, a dev threshold; and
released published checkpoints (`.pth` state dicts of github ductuantruong/dpda_ga), read as the
same (model, state) pair with a config made from dpda's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dpda.dotted import set_dotted
from dpda.errors import UserError
from dpda.models.published import (
    detect_published_model,
    model_from_published_state,
    published_tensors,
)
from dpda.models.state_dict import load_weights
from dpda.train.checkpoint import load_checkpoint
from dpda.train.config import PUBLISHED_SCORE, config_from_dict
from dpda.train.losses import build_detector

MODEL_FORMAT = "dpda-model"
CHECKPOINT_FORMATS = ("auto", "dpda", "published")


def checkpoint_format(state: Any) -> str:
    """`dpda` for a model file dpda wrote (its format tag), else `published`."""
    return "dpda" if isinstance(state, dict) and state.get("format") == MODEL_FORMAT else "published"


def load_trained_model(path: str | Path, device: torch.device, fmt: str = "dpda",
                       settings: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from the config stored beside its weights (no SSL download needed: the
    fine-tuned front-end weights are part of the state dict), or from a published checkpoint.

    `fmt`: `dpda`, `published` or `auto` (from the file's contents). `settings`: dotted config
    keys applied to the stored config (dpda) or to dpda's defaults (published; `model.name`
    unset = detected from the keys, e.g. `data.length`, `model.overrides.ssl_layers`)."""
    if fmt not in CHECKPOINT_FORMATS:
        raise UserError(f"checkpoint format {fmt!r}: choose from {', '.join(CHECKPOINT_FORMATS)}")
    state = load_checkpoint(path)
    if fmt == "auto":
        fmt = checkpoint_format(state)
    if fmt == "published":
        return _load_published(path, state, device, settings or {})
    if checkpoint_format(state) != "dpda":
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        hint = "; a published checkpoint? read it with --checkpoint-format published" if found is None else ""
        raise UserError(f"{path}: expected a {MODEL_FORMAT!r} checkpoint, found {found!r}{hint}")
    if "config" not in state:
        raise UserError(f"{path}: a per-epoch checkpoint without its config; use the run's model.pt")
    raw = state["config"]
    for key, value in (settings or {}).items():
        set_dotted(raw, key, value)
    cfg = config_from_dict(raw, source=str(path))
    state["config"] = cfg.to_dict()
    model = build_detector(cfg)
    load_weights(model, state["model"], path, f"the {cfg.model.name}:{cfg.model.preset} model its config describes")
    model.to(device).eval()
    return model, state


def _load_published(path: str | Path, state: Any, device: torch.device,
                    settings: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    weights = published_tensors(state, path)
    raw: dict[str, Any] = {}
    for key, value in settings.items():
        set_dotted(raw, key, value)
    source = f"{path} (published checkpoint)"
    if isinstance(raw.setdefault("eval", {}), dict):  # scored as the published code scores, unless set
        raw["eval"].setdefault("score", PUBLISHED_SCORE)
    section = raw.get("model", {})
    detect = isinstance(section, dict) and "name" not in section
    # Without model.name the model is detected from the keys, so its overrides are checked after.
    settled = {**raw, "model": {k: v for k, v in section.items() if k != "overrides"}} if detect else raw
    cfg = config_from_dict(settled, source=source)  # checks the settings before anything is built
    if cfg.model.preset != "full":
        raise UserError(f"{source}: model.preset: published checkpoints are full-preset models, got {cfg.model.preset!r}")
    if detect:
        overrides = section.get("overrides") or {}
        if isinstance(overrides, dict):
            set_dotted(raw, "model.name", detect_published_model(weights, path, **overrides))
    cfg = config_from_dict(raw, source=source)
    model = model_from_published_state(weights, path, cfg.model.name, **cfg.model.overrides)
    model.to(device).eval()
    return model, {"format": "published", "config": cfg.to_dict()}
