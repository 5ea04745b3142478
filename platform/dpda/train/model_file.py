"""The trained-model file (`model.pt`): weights, the config that built them, a dev threshold; and
released checkpoints (`.pth` state dicts of github ductuantruong/dpda_ga, format `published`; of
the released AASIST family, format `aasist`), read as the same (model, state) pair with a config
made from dpda's defaults and the released code's scoring (`RELEASED_DEFAULTS`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dpda.dotted import set_dotted
from dpda.errors import UserError
from dpda.models.published import (
    FORMATS,
    detect_layout,
    model_from_published_state,
    published_tensors,
)
from dpda.models.released_aasist import RELEASED_LENGTH
from dpda.models.state_dict import load_weights
from dpda.train.checkpoint import load_checkpoint
from dpda.train.config import PUBLISHED_SCORE, config_from_dict
from dpda.train.inference import inference_layout
from dpda.train.optim_params import load_tables, named_frozen_tables
from dpda.train.losses import build_detector

MODEL_FORMAT = "dpda-model"
CHECKPOINT_FORMATS = ("auto", "dpda", *FORMATS)
# What a released checkpoint's config gets unless a setting says otherwise: scored as its own code
# scores (the bona fide logit; the released AASIST main.py on the first 64,600 samples).
RELEASED_DEFAULTS: dict[str, dict[str, Any]] = {
    "published": {"eval.score": PUBLISHED_SCORE},
    "aasist": {"eval.score": PUBLISHED_SCORE, "eval.length": RELEASED_LENGTH},
    "nes2net": {"eval.score": PUBLISHED_SCORE},
    "sls": {"eval.score": PUBLISHED_SCORE},
}


def checkpoint_format(state: Any) -> str:
    """`dpda` for a model file dpda wrote (its format tag), else `released` (a released state dict,
    its format detected from the keys)."""
    return "dpda" if isinstance(state, dict) and state.get("format") == MODEL_FORMAT else "released"


def load_trained_model(path: str | Path, device: torch.device, fmt: str = "dpda",
                       settings: dict[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A trained model ready to score (eval mode, `inference_layout`), and its checkpoint state;
    `_load_model`'s documentation says what it reads."""
    model, state = _load_model(path, device, fmt, settings)
    return inference_layout(model), state


def _load_model(path: str | Path, device: torch.device, fmt: str,
                settings: dict[str, Any] | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from the config stored beside its weights (no SSL download needed: the
    fine-tuned front-end weights are part of the state dict), or from a published checkpoint.

    `fmt`: `dpda`, `auto` (from the file's contents) or a released format of `FORMATS`
    (`published`, `aasist`, `nes2net`, `sls`). `settings`: dotted
    config keys applied to the stored config (dpda) or to dpda's defaults (a released checkpoint;
    `model.name` / `model.preset` unset = detected from the keys and shapes, e.g. `data.length`,
    `model.overrides.ssl_layers`)."""
    if fmt not in CHECKPOINT_FORMATS:
        raise UserError(f"checkpoint format {fmt!r}: choose from {', '.join(CHECKPOINT_FORMATS)}")
    state = load_checkpoint(path)
    if fmt == "auto":
        fmt = checkpoint_format(state)
    if fmt != "dpda":
        return _load_released(path, state, device, settings or {}, None if fmt == "released" else fmt)
    if checkpoint_format(state) != "dpda":
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        hint = ("; a released checkpoint? read it with --checkpoint-format published, aasist or auto"
                if found is None else "")
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
    load_tables(model, _tables(state, model, path))
    model.to(device).eval()
    return model, state


def _tables(state: dict[str, Any], model: torch.nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """The frozen tables a model file stores (`optim.params: published`), checked by name and shape."""
    tables, own = state.get("tables") or {}, named_frozen_tables(model)
    for name, table in tables.items():
        if name not in own or own[name].shape != table.shape:
            expected = f"shape {tuple(own[name].shape)}" if name in own else "no such table"
            raise UserError(f"{path}: tables.{name}: {tuple(table.shape)} does not fit the model ({expected})")
    return tables


def _load_released(path: str | Path, state: Any, device: torch.device, settings: dict[str, Any],
                   fmt: str | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A released state dict of format `fmt` (None: any, detected) as (model, state)."""
    weights = published_tensors(state, path)
    raw: dict[str, Any] = {}
    for key, value in settings.items():
        set_dotted(raw, key, value)
    source = f"{path} ({fmt or 'released'} checkpoint)"
    section = raw.get("model", {})
    if fmt and isinstance(section, dict) and section.get("name", next(iter(FORMATS[fmt]))) not in FORMATS[fmt]:
        raise UserError(f"model.name: --checkpoint-format {fmt} reads {' or '.join(FORMATS[fmt])} checkpoints, "
                        f"got {section['name']!r}")
    if isinstance(section, dict) and "name" in section and "preset" not in section:
        # a named model whose layouts fit one preset: that one (its overrides may be what makes the file fit)
        presets = {p for models in ([FORMATS[fmt]] if fmt else FORMATS.values())
                   for p in (models[section["name"]].presets if section["name"] in models else ())}
        if len(presets) == 1:
            section["preset"] = presets.pop()
    detect = isinstance(section, dict) and not {"name", "preset"} <= section.keys()
    # Without model.name / preset the model is detected from the keys, so its overrides are checked after.
    settled = {**raw, "model": {k: v for k, v in section.items() if k != "overrides"}} if detect else raw
    config_from_dict(settled, source=source)  # checks the settings before anything is built
    if detect:
        overrides = section.get("overrides") or {}
        found, name, preset = detect_layout(weights, path, fmt, **(overrides if isinstance(overrides, dict) else {}))
        fmt = fmt or found
        section.setdefault("name", name)
        section.setdefault("preset", preset)
        raw["model"] = section
    elif fmt is None:
        fmt = next((f for f, models in FORMATS.items() if section["name"] in models
                    and section["preset"] in models[section["name"]].presets), "published")
    for key, value in RELEASED_DEFAULTS[fmt].items():  # scored as the released code scores, unless set
        section_name, field = key.split(".")
        if isinstance(raw.setdefault(section_name, {}), dict):
            raw[section_name].setdefault(field, value)
    cfg = config_from_dict(raw, source=source)
    model = model_from_published_state(weights, path, cfg.model.name, cfg.model.preset, fmt, **cfg.model.overrides)
    model.to(device).eval()
    return model, {"format": fmt, "config": cfg.to_dict()}
