"""Training configuration: typed sections, every field validated, unknown keys rejected.

A config is YAML (safe-loaded) mapping onto the dataclasses below. Errors name the file and the
dotted key path (``demo.yaml: optim.lr: must be > 0``) so a typo never silently falls back to a
default on a cluster.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dpda.errors import UserError
from dpda.tune.search_space import set_dotted  # noqa: F401  (re-exported: CLI and study use it)
from dpda.yaml_io import read_yaml


@dataclass
class DataConfig:
    """Corpora as `KIND:PATH[:SUBSET]` specs (see `dpda.data.readers.load_corpus`)."""

    train: list[str] = field(default_factory=list)
    dev: list[str] = field(default_factory=list)
    eval: dict[str, list[str]] = field(default_factory=dict)
    length: int = 66_800
    num_workers: int = 2
    check: Literal["fail", "skip"] = "fail"


@dataclass
class ModelConfig:
    name: str = "aasist"
    preset: str = "full"
    overrides: dict[str, Any] = field(default_factory=dict)
    ssl_checkpoint: str | None = None
    freeze_frontend: bool = False


@dataclass
class AugmentConfig:
    """`none`: originals only; `da`: RawBoost copies only (the DA baseline); `dual`: both paths."""

    mode: Literal["none", "da", "dual"] = "dual"
    rawboost: dict[str, Any] = field(default_factory=lambda: {"algo": 4})


@dataclass
class AlignConfig:
    rule: Literal["none", "pcgrad", "gradvac", "cagrad", "mgda"] = "pcgrad"
    strength: float = 1.0
    granularity: Literal["model", "layer"] = "model"
    options: dict[str, Any] = field(default_factory=dict)
    mode: Literal["separate", "joint"] = "separate"


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 1e-4
    batch_size: int = 5
    epochs: int = 100
    patience: int = 7
    clip_norm: float | None = None
    amp: bool = False
    max_steps_per_epoch: int | None = None


@dataclass
class LossConfig:
    # index 0 spoof, index 1 bona fide (published weighting)
    class_weights: list[float] = field(default_factory=lambda: [0.1, 0.9])


@dataclass
class CheckpointConfig:
    average_best: int = 5
    select_by: Literal["dev_loss", "dev_eer"] = "dev_loss"


@dataclass
class TelemetryConfig:
    enabled: bool = True
    flush_every: int = 200


@dataclass
class TrainConfig:
    seed: int = 1234
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_RULES: dict[str, typing.Callable[[Any], str | None]] = {
    "data.length": lambda v: None if v > 0 else "must be > 0",
    "data.num_workers": lambda v: None if v >= 0 else "must be >= 0",
    "align.strength": lambda v: None if 0.0 <= v <= 1.0 else "must be in [0, 1]",
    "optim.lr": lambda v: None if v > 0 else "must be > 0",
    "optim.weight_decay": lambda v: None if v >= 0 else "must be >= 0",
    "optim.batch_size": lambda v: None if v > 0 else "must be > 0",
    "optim.epochs": lambda v: None if v > 0 else "must be > 0",
    "optim.patience": lambda v: None if v > 0 else "must be > 0",
    "optim.clip_norm": lambda v: None if v is None or v > 0 else "must be > 0 or null",
    "optim.max_steps_per_epoch": lambda v: None if v is None or v > 0 else "must be > 0 or null",
    "loss.class_weights": lambda v: None
    if len(v) == 2 and all(w >= 0 for w in v) and sum(v) > 0
    else "must be two non-negative weights [spoof, bonafide]",
    "checkpoint.average_best": lambda v: None if v >= 1 else "must be >= 1",
    "telemetry.flush_every": lambda v: None if v >= 1 else "must be >= 1",
}


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a type hint, converting ints to floats; raise naming `where`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if origin is Literal:
        if value not in args:
            raise UserError(f"{where}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: must be a list, got {type(value).__name__}")
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: must be a mapping, got {type(value).__name__}")
        return {str(k): _convert(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {where}")


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{where or 'config'}: must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, raw)) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise UserError(f"{key}: unknown key (allowed: {', '.join(sorted(names))})")
    kwargs = {}
    for name in names & set(raw):
        path = f"{where}.{name}" if where else name
        value = _convert(raw[name], hints[name], path)
        check = _RULES.get(path)
        problem = check(value) if check else None
        if problem:
            raise UserError(f"{path}: {problem}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> TrainConfig:
    """Validate a nested dict; every error message starts with `source` and the key path."""
    try:
        cfg = _build(TrainConfig, raw, "")
        _check_components(cfg)
    except UserError as exc:
        raise UserError(f"{source}: {exc}") from None
    return cfg


def _check_components(cfg: TrainConfig) -> None:
    """Validate the parts owned by other modules now, not an hour into a run."""
    from dpda.align import make_aligner
    from dpda.augment import RawBoost
    from dpda.models import list_models

    if cfg.model.name not in list_models():
        raise UserError(f"model.name: unknown model {cfg.model.name!r} (known: {', '.join(list_models())})")
    try:
        RawBoost.from_config(cfg.augment.rawboost)
    except UserError as exc:
        raise UserError(f"augment.rawboost: {exc}") from None
    try:
        make_aligner(cfg.align.rule, strength=cfg.align.strength, granularity=cfg.align.granularity,
                     **cfg.align.options)
    except UserError as exc:
        raise UserError(f"align.options: {exc}") from None
    if cfg.augment.mode == "dual" and cfg.data.train and not cfg.data.dev:
        raise UserError("data.dev: a dev set is needed for early stopping and model selection")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config with safe loading, apply dotted overrides, validate."""
    path = Path(path)
    raw = read_yaml(path, "config file") or {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: the config must be a mapping")
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return config_from_dict(raw, source=str(path))
