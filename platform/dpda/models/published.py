"""Released checkpoints as dpda models: the published DPDA code's (github ductuantruong/dpda_ga,
format `published`), Nes2Net-X's (Liu-Tianchi/Nes2Net_ASVspoof_ITW, `nes2net`) and XLSR-SLS's
(QiShanZhang/SLSforADD, `sls`), read through the same table, and the released AASIST family's
(format `aasist`, `dpda.models.released_aasist`).

A published `.pth` is the `state_dict()` of its `Model` (fairseq XLS-R under `ssl_model.model.`,
the back end under its own names), possibly with DataParallel's `module.` prefix. CONVERTERS maps
a dpda model name to the function renaming such a state dict to that model's keys (the documented
tables live beside each model: `dpda.models.conformer_tcm.PUBLISHED_KEYS`, the front end in
`dpda.models.ssl_weights.split_published_state`). The converted state must then fit the
model's `full` preset exactly, or loading stops at one line naming the first key that does not.
FORMATS holds every format's layouts (converter and presets) for `--checkpoint-format` and detection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dpda.console import info
from dpda.errors import UserError
from dpda.models import mamba, nes2net, sls, ssl_aasist
from dpda.models.conformer_tcm import PUBLISHED_TABLES as CONFORMER_TCM_TABLES
from dpda.models.conformer_tcm import published_to_dpda as conformer_tcm_to_dpda
from dpda.models.registry import build_for_shapes, build_model
from dpda.models.released_aasist import released_to_dpda
from dpda.models.state_dict import load_weights, read_weights_only, state_mismatch

Converter = Callable[[dict[str, Tensor]], dict[str, Tensor]]
CONVERTERS: dict[str, Converter] = {
    "ssl_conformer_tcm": conformer_tcm_to_dpda,
    "ssl_aasist": ssl_aasist.published_to_dpda,
    "ssl_mamba": mamba.published_to_dpda,
    "ssl_nes2net_x": nes2net.published_to_dpda,
    "ssl_sls": sls.published_to_dpda,
}



@dataclass(frozen=True)
class Layout:
    """One family of released files for one dpda model: its key converter and the presets its
    files fit (detection tries them in order; the shapes tell them apart)."""

    convert: Converter
    presets: tuple[str, ...] = ("full",)


# Checkpoint format (`--checkpoint-format`) -> dpda model -> layout. `published`: the published
# DPDA code's checkpoints (CONVERTERS); `aasist`: the released clovaai AASIST / AASIST-L and the
# ASVspoof 5 baseline (dpda.models.released_aasist).
FORMATS: dict[str, dict[str, Layout]] = {
    "published": {name: Layout(convert) for name, convert in CONVERTERS.items()},
    "aasist": {"aasist": Layout(released_to_dpda, ("released", "released_l"))},
    # the released Nes2Net-X and XLSR-SLS checkpoints: `published` layouts read as that one model
    "nes2net": {"ssl_nes2net_x": Layout(CONVERTERS["ssl_nes2net_x"])},
    "sls": {"ssl_sls": Layout(CONVERTERS["ssl_sls"])},
}
# Tables a model recomputes (non-persistent buffers) that a published checkpoint may still carry:
# published key -> dpda buffer. A present table is loaded (a drifted one changes the logits).
TABLES: dict[str, dict[str, str]] = {"ssl_conformer_tcm": CONFORMER_TCM_TABLES}
TABLE_ATOL = 1e-5  # float32 rounding of the published sinusoid against dpda's
DATA_PARALLEL_PREFIX = "module."
_FORMAT_WHAT = {"published": "a published checkpoint of any known model",
                "aasist": "a released AASIST checkpoint (clovaai AASIST / AASIST-L, ASVspoof 5 baseline)",
                "nes2net": "a released Nes2Net-X checkpoint", "sls": "a released XLSR-SLS checkpoint",
                None: "a published or released checkpoint of any known layout"}


def read_published_state(path: str | Path) -> dict[str, Tensor]:
    """The state dict of a released `.pth` (read with `weights_only=True`), `module.` stripped."""
    return published_tensors(read_weights_only(path), path)


def published_tensors(state: Any, source: str | Path) -> dict[str, Tensor]:
    """Check that `state` is a name -> tensor mapping and strip DataParallel's `module.` prefix."""
    if isinstance(state, dict) and not state:
        raise UserError(f"{source}: the checkpoint holds no tensors (an empty dict); "
                        "expected a published state dict (name -> tensor)")
    if not isinstance(state, dict):
        raise UserError(f"{source}: expected a published state dict (name -> tensor), got {type(state).__name__}")
    bad = next((k for k, v in state.items() if not isinstance(v, Tensor)), None)
    if bad is not None:
        raise UserError(f"{source}: entry {bad!r} is not a tensor; a published checkpoint is a plain state dict")
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def _layout(fmt: str, name: str, preset: str, source: str | Path) -> Layout:
    models = FORMATS[fmt]
    if name not in models:
        raise UserError(f"{source}: model {name!r}: no {fmt} checkpoint layout (known: {', '.join(models)})")
    layout = models[name]
    if preset not in layout.presets:
        raise UserError(f"{source}: model.preset: {fmt} checkpoints of {name} are preset "
                        f"{' or '.join(layout.presets)}, got {preset!r}")
    return layout


def detect_layout(state: dict[str, Tensor], source: str | Path, fmt: str | None = None,
                  **overrides: Any) -> tuple[str, str, str]:
    """(format, model, preset) whose converter turns `state` into exactly that model's keys and
    shapes; `fmt` None tries every format. One line naming the closest layout otherwise."""
    problems, tried = [], set()
    for each in ([fmt] if fmt else list(FORMATS)):
        for name, layout in FORMATS[each].items():
            for preset in layout.presets:
                if (name, preset, layout.convert) in tried:  # one layout under two formats (sls, published)
                    continue
                tried.add((name, preset, layout.convert))
                try:
                    own, converted = build_for_shapes(name, preset, **overrides).state_dict(), layout.convert(state)
                except UserError as exc:  # an override this model does not take
                    problems.append((0, len(state), f"{name}:{preset}", str(exc)))
                    continue
                problem = _mismatch(own, state, layout.convert, converted)
                if problem is None:
                    return each, name, preset
                # closest: the most keys of the file landing on the model's with its shapes, then the fewest left over
                fitting = sum(k in own and tuple(own[k].shape) == tuple(v.shape) for k, v in converted.items())
                problems.append((-fitting, len(own.keys() ^ converted.keys()), f"{name}:{preset}", problem))
    *_, name, problem = min(problems)
    raise UserError(f"{source}: not {_FORMAT_WHAT[fmt]} (closest: {name}: {problem})")


def detect_published_model(state: dict[str, Tensor], source: str | Path, **overrides: Any) -> str:
    """The model whose converter turns `state` into exactly its `full` keys and shapes."""
    return detect_layout(state, source, "published", **overrides)[1]


def load_published_checkpoint(path: str | Path, name: str | None = None, **overrides: Any) -> nn.Module:
    """Build `name` (full preset with `overrides`; None = detect from the keys) and load a released
    published `.pth` into it; returns the model in eval mode on the CPU."""
    state = read_published_state(path)
    return model_from_published_state(state, path, name, **overrides)


def load_released_aasist(path: str | Path, preset: str | None = None, **overrides: Any) -> nn.Module:
    """A released AASIST `.pth` (clovaai AASIST / AASIST-L, the ASVspoof 5 baseline) as dpda's
    `aasist` (preset None = detected from the shapes), in eval mode on the CPU."""
    state = read_published_state(path)
    if preset is None:
        _, _, preset = detect_layout(state, path, "aasist", **overrides)
    return model_from_published_state(state, path, "aasist", preset=preset, fmt="aasist", **overrides)


def model_from_published_state(state: dict[str, Tensor], source: str | Path, name: str | None = None,
                               preset: str = "full", fmt: str = "published", **overrides: Any) -> nn.Module:
    """`load_published_checkpoint` for a state dict already read (`published_tensors`), of
    checkpoint format `fmt` (a FORMATS key) into model `name` at `preset`."""
    if name is None:
        fmt, name, preset = detect_layout(state, source, fmt, **overrides)
    convert = _layout(fmt, name, preset, source).convert
    weights = convert(state)
    meta = build_for_shapes(name, preset, **overrides)
    problem = _mismatch(meta.state_dict(), state, convert, weights)
    if problem:  # checked before building, so a 300M-parameter model is not built for nothing
        raise UserError(f"{source}: the {fmt} weights do not fit {name}:{preset} ({problem})")
    tables = _tables(state, meta, name, source)
    model = build_model(name, preset, **overrides)
    load_weights(model, weights, source, name)
    _load_tables(model, tables, source)
    return model.eval()


def _mismatch(own: dict[str, Tensor], state: dict[str, Tensor], convert: Callable[[dict[str, Tensor]], dict[str, Tensor]],
              converted: dict[str, Tensor]) -> str | None:
    """`state_mismatch` of the converted state, its problem naming the key as the file writes it
    beside dpda's name (each key renamed alone: the converters rename key by key)."""
    if state_mismatch(own, converted) is None:
        return None
    derived = convert({}).keys()  # what a converter adds from nothing (the released sinc band edges)
    origins = {new: key for key, value in state.items() for new in convert({key: value}) if new not in derived}
    return state_mismatch(own, converted, origins)


def _tables(state: dict[str, Tensor], meta: nn.Module, name: str, source: str | Path) -> dict[str, tuple[str, Tensor]]:
    """dpda buffer -> (published key, table) for each recomputed table `state` carries, shape-checked."""
    found = {}
    for key, buffer in TABLES.get(name, {}).items():
        if key in state:
            expected = tuple(meta.get_buffer(buffer).shape)
            if tuple(state[key].shape) != expected:
                raise UserError(f"{source}: {key} (dpda: {buffer}) has shape {tuple(state[key].shape)}, "
                                f"{name} expects {expected}")
            found[buffer] = (key, state[key])
    return found


@torch.no_grad()
def _load_tables(model: nn.Module, tables: dict[str, tuple[str, Tensor]], source: str | Path) -> None:
    """Copy each table into its buffer, so the logits are the published forward's; one line when
    it differs from the table dpda computes (the published GA runs' weight decay moves it)."""
    for buffer_name, (key, table) in tables.items():
        buffer = model.get_buffer(buffer_name)
        drift = float((table.to(buffer) - buffer).abs().max())
        buffer.copy_(table)
        if drift > TABLE_ATOL:
            info(f"{source}: {key} differs from the sinusoid (max |diff| {drift:.3g}); loaded its values into {buffer_name}")

