"""Model registry: every detector by name and preset, built with checked overrides.

`full` presets have the published sizes; `tiny` presets keep the same architecture with a few
tens of thousands of parameters so CPU tests and demos run in seconds on 1-s inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
from torch import nn

from dpda.errors import UserError
from dpda.models.aasist import AASIST
from dpda.models.lcnn import LCNN
from dpda.models.rawnet2 import RawNet2
from dpda.models.ssl import SSLDetector

_AASIST_TINY_BLOCKS = ((1, 8), (8, 8), (8, 16), (16, 16))
# The released clovaai AASIST / AASIST-L (config/AASIST.conf, AASIST-L.conf; the ASVspoof 5 baseline
# is AASIST.conf's sizes): dpda.models.released_aasist. Their residual blocks' first convolution
# reads the block input (preactivate=False), their sinc filters have unit passband gain, and both
# second-branch graph pools use the third pool ratio (the released Model passes pool_ratios[2] to
# pool_hS2 / pool_hT2).
_AASIST_RELEASED = dict(sinc_filters=70, sinc_kernel=128, sinc_learnable=False,
                        blocks=((1, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64)), gat_dims=(64, 32),
                        pool_ratios=(0.5, 0.7, 0.5, 0.5), temperatures=(2.0, 2.0, 100.0, 100.0), preactivate=False,
                        sinc_unit_gain=True)
_AASIST_RELEASED_L = dict(_AASIST_RELEASED, blocks=((1, 32), (32, 32), (32, 24), (24, 24), (24, 24), (24, 24)),
                          gat_dims=(24, 32), pool_ratios=(0.4, 0.5, 0.7, 0.7))
# The published SSL-AASIST (dpda_ga nets/aasist.py): six residual blocks, 447,242 back-end parameters.
_SSL_AASIST_FULL = dict(proj_dim=128, blocks=((1, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64)),
                        gat_dims=(64, 32), pool_ratios=(0.5, 0.5, 0.5, 0.5), temperatures=(2.0, 2.0, 100.0, 100.0))
_SSL_AASIST_TINY = dict(proj_dim=24, blocks=((1, 8), (8, 8), (8, 16)), gat_dims=(16, 8),
                        pool_ratios=(0.5, 0.5, 0.5, 0.5), temperatures=(2.0, 2.0, 100.0, 100.0))
# The published XLSR-Mamba (dpda_ga nets/mamba.py, --emb-size 144 --num_mamba_encoders 12): 1,936,950.
_SSL_MAMBA_FULL = dict(d_model=144, num_layers=6, d_state=16, d_conv=4, expand=2, dropout=0.1)
_SSL_MAMBA_TINY = dict(d_model=16, num_layers=2, d_state=4, d_conv=4, expand=2, dropout=0.1)
# The published Nes2Net-X (Liu-Tianchi/Nes2Net_ASVspoof_ITW, --Nes_ratio 8 8 --SE_ratio 1
# --dilation 2 --pool_func mean): 512,039 trainable back-end parameters.
_SSL_NES2NET_FULL = dict(outer=8, inner=8, se_ratio=1, dilation=2, kernel_size=3, pool="mean")
_SSL_NES2NET_TINY = dict(outer=4, inner=4, se_ratio=2, dilation=2, kernel_size=3, pool="mean")
# The published XLSR-SLS (QiShanZhang/SLSforADD): every XLS-R layer, 201 frames (64,600-sample
# inputs), 23,399,429 trainable back-end parameters; tiny: the 49 frames of a 1-s input.
_SSL_SLS_FULL = dict(frames=201, hidden=1024)
_SSL_SLS_TINY = dict(frames=49, hidden=32)
# ssl_dropout: the front end's dropout / layer drop (None: all 0.0; the trainer sets it from
# `model.frontend_dropout`)
_SSL_COMMON = dict(ssl_layers="weighted", freeze_frontend=False, normalize_waveform=False, ssl_dropout=None)
# The SSL models' front-end arguments (what SSLDetector takes besides the back end's).
SSL_FRONTEND_KEYS = frozenset({"ssl", *_SSL_COMMON})
# The published SSL back ends read the last XLS-R layer.
_SSL_PUBLISHED = dict(_SSL_COMMON, ssl_layers="last")

@dataclass(frozen=True)
class ModelEntry:
    """One model: its builder and its presets (constructor arguments by preset name)."""

    builder: Callable[..., nn.Module]
    presets: Mapping[str, Mapping[str, Any]]


def _ssl(backend: str) -> Callable[..., nn.Module]:
    return lambda **kw: SSLDetector(backend, **kw)


# The only table of models: `model.name` in configs, `dpda models` and the published loaders read it.
MODELS: dict[str, ModelEntry] = {
    "aasist": ModelEntry(AASIST, {
        "full": dict(sinc_filters=70, sinc_kernel=128, sinc_learnable=False,
                     blocks=((1, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64)), gat_dims=(64, 32),
                     pool_ratios=(0.5, 0.7, 0.5, 0.5), temperatures=(2.0, 2.0, 100.0, 100.0), preactivate=True,
                     sinc_unit_gain=False),
        "tiny": dict(sinc_filters=24, sinc_kernel=64, sinc_learnable=False, blocks=_AASIST_TINY_BLOCKS,
                     gat_dims=(16, 8), pool_ratios=(0.5, 0.7, 0.5, 0.5), temperatures=(2.0, 2.0, 100.0, 100.0),
                     preactivate=True, sinc_unit_gain=False),
        "released": _AASIST_RELEASED,
        "released_l": _AASIST_RELEASED_L,
    }),
    "rawnet2": ModelEntry(RawNet2, {
        "full": dict(sinc_filters=20, sinc_kernel=1024, sinc_learnable=False,
                     blocks=((20, 20), (20, 20), (20, 128), (128, 128), (128, 128), (128, 128)),
                     gru_hidden=1024, gru_layers=3, fc_hidden=1024),
        "tiny": dict(sinc_filters=8, sinc_kernel=128, sinc_learnable=False,
                     blocks=((8, 8), (8, 16), (16, 16), (16, 16), (16, 16)), gru_hidden=32, gru_layers=1, fc_hidden=32),
    }),
    "lcnn": ModelEntry(LCNN, {
        "full": dict(n_lfcc=20, n_filter=20, channels=(32, 48, 64, 32), first_kernel=5, kernel=3, lstm_layers=2,
                     dropout=0.7, pre_emphasis=0.97, feature_norm="batch", features="lfcc"),
        "tiny": dict(n_lfcc=20, n_filter=20, channels=(16, 24, 32, 16), first_kernel=5, kernel=3, lstm_layers=0,
                     dropout=0.2, pre_emphasis=0.97, feature_norm="batch", features="lfcc"),
    }),
    "ssl_aasist": ModelEntry(_ssl("aasist"), {
        "full": dict(ssl="xlsr_300m", **_SSL_PUBLISHED, **_SSL_AASIST_FULL),
        "tiny": dict(ssl="tiny", **_SSL_PUBLISHED, **_SSL_AASIST_TINY),
    }),
    "ssl_mamba": ModelEntry(_ssl("mamba"), {
        "full": dict(ssl="xlsr_300m", **_SSL_PUBLISHED, **_SSL_MAMBA_FULL),
        "tiny": dict(ssl="tiny", **_SSL_PUBLISHED, **_SSL_MAMBA_TINY),
    }),
    "ssl_nes2net_x": ModelEntry(_ssl("nes2net_x"), {
        "full": dict(ssl="xlsr_300m", **_SSL_PUBLISHED, **_SSL_NES2NET_FULL),
        "tiny": dict(ssl="tiny", **_SSL_PUBLISHED, **_SSL_NES2NET_TINY),
    }),
    "ssl_sls": ModelEntry(_ssl("sls"), {
        "full": dict(ssl="xlsr_300m", **dict(_SSL_COMMON, ssl_layers="all"), **_SSL_SLS_FULL),
        "tiny": dict(ssl="tiny", **dict(_SSL_COMMON, ssl_layers="all"), **_SSL_SLS_TINY),
    }),
    # full: the published XLS-R + Conformer-TCM (last XLS-R layer, 2,382,628 trainable back-end
    # parameters); tiny: the same architecture, narrow.
    "ssl_conformer_tcm": ModelEntry(_ssl("conformer_tcm"), {
        "full": dict(ssl="xlsr_300m", **_SSL_PUBLISHED, d_model=144, num_heads=4,
                     num_layers=4, kernel_size=31, ffn_mult=4, conv_expansion=2, dropout=0.0,
                     identical_blocks=False),
        "tiny": dict(ssl="tiny", **_SSL_PUBLISHED, d_model=32, num_heads=4, num_layers=1,
                     kernel_size=7, ffn_mult=4, conv_expansion=2, dropout=0.0, identical_blocks=False),
    }),
}


def list_models() -> dict[str, list[str]]:
    """{model name: [preset names]}."""
    return {name: list(entry.presets) for name, entry in MODELS.items()}


def model_config(name: str, preset: str = "full", **overrides: Any) -> dict[str, Any]:
    """The constructor arguments `build_model` would use (preset merged with checked overrides)."""
    return resolve_config(name, preset, overrides)


def resolve_config(name: str, preset: str, overrides: Mapping[str, Any], where: str | None = None) -> dict[str, Any]:
    """Preset merged with `overrides`, every key checked. With `where` (a config section such as
    `model`), errors name its key (`model.preset: ...`, `model.overrides.X: ...`), else the model."""
    def fail(key: str, problem: str) -> NoReturn:
        raise UserError(f"{where}.{key}: {problem}" if where else f"model {name!r}: {problem}")

    entry = MODELS.get(name)
    if entry is None:
        fail("name", f"unknown model {name!r} (choose from {', '.join(MODELS)})")
    if preset not in entry.presets:
        fail("preset", f"unknown preset {preset!r} of {name} (choose from {', '.join(entry.presets)})")
    config = dict(entry.presets[preset])
    for key in overrides:
        if key not in config:
            fail(f"overrides.{key}", f"unknown parameter {key!r} of {name} (known: {', '.join(config)})")
    config.update(overrides)
    return config


def build_model(name: str, preset: str = "full", seed: int | None = None, **overrides: Any) -> nn.Module:
    """Build model `name` from `preset` with `overrides`; waveform (B, T) -> logits (B, 2).

    With `seed`, parameters are initialised from that seed without touching the caller's global
    RNG state, so the same (name, preset, overrides, seed) always gives the same weights.
    """
    config = model_config(name, preset, **overrides)
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        try:
            return MODELS[name].builder(**config)
        except TypeError as exc:  # a wrongly typed override reaching a constructor
            raise UserError(f"model {name}: bad parameter value ({exc})") from None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def build_for_shapes(name: str, preset: str = "full", **overrides: Any) -> nn.Module:
    """The model for its keys, shapes and counts only: built on the meta device (no memory, no
    initialisation work), or on the CPU for a model whose constructor computes from tensor values."""
    try:
        with torch.device("meta"):
            return build_model(name, preset, **overrides)
    except (RuntimeError, NotImplementedError):
        return build_model(name, preset, **overrides)
