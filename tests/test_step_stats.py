"""StepStats is written out field by field; the telemetry schema stays the one fact it follows."""

from __future__ import annotations

import ast
import inspect
import typing
from dataclasses import fields

import numpy as np
import pyarrow as pa
import torch
from dpda_analysis import schema as S

from dpda.train import step_stats
from dpda.train.step_stats import StepStats


KEYS = (*S.STEP_STAT_KEYS, *S.LAYER_STAT_KEYS, *S.PATH_STAT_KEYS, *S.LAYER_PATH_STAT_KEYS)


def _value(name: str, i: int, layers: int, pairs: int = 3) -> torch.Tensor:
    """A distinct value of the field's shape: 0-dim, (layers,), (P,) / (pairs,), (layers, pairs)."""
    if name in S.LAYER_STAT_KEYS:
        return torch.arange(layers, dtype=torch.float64) + i
    if name in S.PATH_STAT_KEYS:
        return torch.arange(pairs, dtype=torch.float64) + i
    if name in S.LAYER_PATH_STAT_KEYS:
        return torch.arange(layers * pairs, dtype=torch.float64).reshape(layers, pairs) + i
    return torch.tensor(float(i))


def test_fields_are_the_schemas_step_layer_and_path_keys_exactly() -> None:
    assert tuple(f.name for f in fields(StepStats)) == KEYS


def test_every_field_is_a_typed_documented_tensor() -> None:
    hints = typing.get_type_hints(StepStats)
    assert all(hints[f.name] is torch.Tensor for f in fields(StepStats))
    body = next(n for n in ast.parse(inspect.getsource(step_stats)).body if getattr(n, "name", "") == "StepStats").body
    documented = {
        field.target.id
        for field, doc in zip(body, body[1:])
        if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)
    }
    assert documented == {f.name for f in fields(StepStats)}


def test_to_host_gives_the_schemas_keys_and_types() -> None:
    layers = 3
    values = {f.name: _value(f.name, i, layers) for i, f in enumerate(fields(StepStats))}
    values["conflict"] = torch.tensor(True)
    values["skipped"] = torch.tensor(False)
    host = StepStats(**values).to_host()
    assert list(host) == list(KEYS)
    for key in S.STEP_STAT_KEYS:
        boolean = pa.types.is_boolean(S.STEPS.field(key).type)
        assert type(host[key]) is (bool if boolean else float), key
        assert host[key] == values[key].item()
    for key in (*S.LAYER_STAT_KEYS, *S.PATH_STAT_KEYS, *S.LAYER_PATH_STAT_KEYS):
        assert host[key] == values[key].tolist()  # layer_path_cos: one list of pairs per layer


def test_applied_transforms_tally_and_host_copy() -> None:
    """The device tally equals numpy's popcount per bit and `np.unique` of the masks, and reaches
    the host beside the step statistics with every mask bit intact (bit 62 included)."""
    from dpda.augment.applied import AppliedTransforms, tally

    rng = np.random.default_rng(3)
    masks = rng.integers(0, 1 << 5, 33) | (rng.random(33) < 0.3).astype(np.int64) << 62
    applied = tally(torch.from_numpy(masks), 63)
    values = {f.name: _value(f.name, 0, 2) for f in fields(StepStats)}
    host = StepStats(**values).to_host(applied)
    assert list(host) == [*KEYS, *S.AUGMENT_STAT_KEYS]
    assert host["augment_counts"] == [int((masks >> j & 1).sum()) for j in range(63)]
    unique, n = np.unique(masks, return_counts=True)
    assert host["augment_combos"] == [{"mask": int(v), "n": int(k)} for v, k in zip(unique, n)]
    empty = StepStats(**values).to_host(AppliedTransforms.empty())
    assert empty["augment_counts"] == [] and empty["augment_combos"] == []
    assert "augment_counts" not in StepStats(**values).to_host()


def test_the_tally_makes_no_host_sync_and_a_fixed_number_of_operators() -> None:
    """It runs every step beside the step's one sync: no operator that reads a device value, and
    as many operators for 8 utterances and 3 leaves as for 64 and 40 (profiled on the CPU, as
    tests/test_step_overhead.py counts the step's)."""
    from dpda.augment.applied import tally
    from dpda.train.op_count import profile_ops

    counts = [profile_ops(tally, torch.randint(0, 1 << leaves, (batch,)), leaves) for batch, leaves in ((8, 3), (64, 40))]
    assert [c.syncs["step"] for c in counts] == [0, 0]
    assert counts[0].ops == counts[1].ops and counts[0].step_ops == counts[1].step_ops
