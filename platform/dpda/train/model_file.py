"""The trained-model file (`model.pt`): weights, the config that built them, a dev threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dpda.errors import UserError
from dpda.models import build_model
from dpda.train.checkpoint import load_checkpoint, load_weights
from dpda.train.config import config_from_dict

MODEL_FORMAT = "dpda-model"


def load_trained_model(path: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from the config stored beside its weights (no SSL download needed:
    the fine-tuned front-end weights are part of the state dict)."""
    state = load_checkpoint(path, MODEL_FORMAT)
    if "config" not in state:
        raise UserError(f"{path}: a per-epoch checkpoint without its config; use the run's model.pt")
    cfg = config_from_dict(state["config"], source=str(path))
    model = build_model(cfg.model.name, cfg.model.preset, **cfg.model.overrides)
    load_weights(model, state["model"], path, f"the {cfg.model.name}:{cfg.model.preset} model its config describes")
    model.to(device).eval()
    return model, state
