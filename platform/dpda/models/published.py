"""Released checkpoints of the published DPDA code (github ductuantruong/dpda_ga), Nes2Net-X
(Liu-Tianchi/Nes2Net_ASVspoof_ITW) and XLSR-SLS (QiShanZhang/SLSforADD) as dpda models.

A published `.pth` is the `state_dict()` of its `Model` (fairseq XLS-R under `ssl_model.model.`,
the back end under its own names), possibly with DataParallel's `module.` prefix. CONVERTERS maps
a dpda model name to the function renaming such a state dict to that model's keys (the documented
tables live beside each model: `dpda.models.conformer_tcm.PUBLISHED_KEYS`, the front end in
`dpda.models.ssl_weights.split_published_state`). The converted state must then fit the
model's `full` preset exactly, or loading stops at one line naming the first key that does not.
"""

from __future__ import annotations

from collections.abc import Callable
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
from dpda.models.state_dict import load_weights, read_weights_only, state_mismatch

CONVERTERS: dict[str, Callable[[dict[str, Tensor]], dict[str, Tensor]]] = {
    "ssl_conformer_tcm": conformer_tcm_to_dpda,
    "ssl_aasist": ssl_aasist.published_to_dpda,
    "ssl_mamba": mamba.published_to_dpda,
    "ssl_nes2net_x": nes2net.published_to_dpda,
    "ssl_sls": sls.published_to_dpda,
}
# `--checkpoint-format` names that read a published checkpoint as one model (no detection).
PUBLISHED_FORMATS: dict[str, str] = {"nes2net": "ssl_nes2net_x", "sls": "ssl_sls"}
# Tables a model recomputes (non-persistent buffers) that a published checkpoint may still carry:
# published key -> dpda buffer. A present table is loaded (a drifted one changes the logits).
TABLES: dict[str, dict[str, str]] = {"ssl_conformer_tcm": CONFORMER_TCM_TABLES}
TABLE_ATOL = 1e-5  # float32 rounding of the published sinusoid against dpda's
DATA_PARALLEL_PREFIX = "module."


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


def _converter(name: str) -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    if name not in CONVERTERS:
        raise UserError(f"model {name!r}: no published checkpoint layout (known: {', '.join(CONVERTERS)})")
    return CONVERTERS[name]


def _meta_state(name: str, **overrides: Any) -> dict[str, Tensor]:
    """Keys and shapes of model `name` (full preset), without allocating its weights."""
    return build_for_shapes(name, "full", **overrides).state_dict()


def detect_published_model(state: dict[str, Tensor], source: str | Path, **overrides: Any) -> str:
    """The model whose converter turns `state` into exactly its `full` keys and shapes; else one
    line naming the closest: fewest keys of the file it has no place for, then fewest differing
    keys (a model with a small back end must not look closest for missing most of the file)."""
    problems: list[tuple[tuple[int, int], str, str]] = []
    for name, convert in CONVERTERS.items():
        try:
            own, converted = _meta_state(name, **overrides), convert(state)
        except UserError as exc:  # an override this model does not take
            problems.append(((len(state), len(state)), name, str(exc)))
            continue
        problem = _mismatch(own, state, convert, converted)
        if problem is None:
            return name
        problems.append(((len(converted.keys() - own.keys()), len(own.keys() ^ converted.keys())), name, problem))
    _, name, problem = min(problems)
    raise UserError(f"{source}: not a published checkpoint of any known model (closest: {name}: {problem})")


def load_published_checkpoint(path: str | Path, name: str | None = None, **overrides: Any) -> nn.Module:
    """Build `name` (full preset with `overrides`; None = detect from the keys) and load a released
    published `.pth` into it; returns the model in eval mode on the CPU."""
    state = read_published_state(path)
    return model_from_published_state(state, path, name, **overrides)


def model_from_published_state(state: dict[str, Tensor], source: str | Path, name: str | None = None,
                               **overrides: Any) -> nn.Module:
    """`load_published_checkpoint` for a state dict already read (`published_tensors`)."""
    name = name or detect_published_model(state, source, **overrides)
    weights = _converter(name)(state)
    meta = build_for_shapes(name, "full", **overrides)
    problem = _mismatch(meta.state_dict(), state, _converter(name), weights)
    if problem:  # checked before building, so a 300M-parameter model is not built for nothing
        raise UserError(f"{source}: the published weights do not fit {name} ({problem})")
    tables = _tables(state, meta, name, source)
    model = build_model(name, "full", **overrides)
    load_weights(model, weights, source, name)
    _load_tables(model, tables, source)
    return model.eval()


def _mismatch(own: dict[str, Tensor], state: dict[str, Tensor], convert: Callable[[dict[str, Tensor]], dict[str, Tensor]],
              converted: dict[str, Tensor]) -> str | None:
    """`state_mismatch` of the converted state, its problem naming the key as the file writes it
    beside dpda's name (each key renamed alone: the converters rename key by key)."""
    if state_mismatch(own, converted) is None:
        return None
    origins = {new: key for key, value in state.items() for new in convert({key: value})}
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

