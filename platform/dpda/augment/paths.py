"""`augment.paths`: several named augmented paths, each its own augmentation, parsed once.

YAML form (the original path is always there, as path 0, `dpda_analysis.schema.ORIGINAL_PATH`)::

    augment:
      mode: dual
      paths:
        lnl: {rawboost: {algo: 1}}
        isd: {rawboost: {algo: 2}}
        noisy: {pipeline: {steps: [{noise: {bank: "musan:data/banks/musan"}}]}}

Each path is a RawBoost settings block (`rawboost:`, as `augment.rawboost`) or a pipeline
(`pipeline:`, as `augment.pipeline`), exactly one of them. Names are identifiers, unique (a
mapping's keys), and not the original path's name. Errors are one UserError line naming the
dotted key (`augment.paths.lnl.rawboost.algo: ...`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dpda_analysis.schema import ORIGINAL_PATH
from pydantic import ConfigDict, PrivateAttr, SerializerFunctionWrapHandler, field_serializer, model_serializer, model_validator

from dpda.augment.params import RawBoostParams
from dpda.augment.spec import MAX_LEAVES, Compose, parse_pipeline, single_step
from dpda.errors import UserError
from dpda.typed import Settings, parse, relation_error

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SINGLE_PATH = "aug"
"""Name of the one augmented path of a config without `augment.paths` (telemetry's `paths`)."""


class AugmentPath(Settings):
    """One augmented path: `rawboost` settings or a `pipeline`; dumps hold the keys given."""

    model_config = ConfigDict(**Settings.model_config, arbitrary_types_allowed=True)

    rawboost: RawBoostParams | None = None
    pipeline: Compose | None = None
    _where: str = PrivateAttr(default="augment.paths")  # its dotted key, for the leaves' messages and labels

    @model_validator(mode="after")
    def _exactly_one(self) -> AugmentPath:
        if (self.rawboost is None) == (self.pipeline is None):
            raise relation_error("rawboost", "give exactly one of rawboost (settings) or pipeline (steps)")
        return self

    @property
    def transforms(self) -> Compose:
        """The path as a pipeline tree: `pipeline`, else one RawBoost step with p = 1."""
        if self.pipeline is not None:
            return self.pipeline
        return single_step("rawboost", self.rawboost, f"{self._where}.rawboost")

    @field_serializer("rawboost")
    def _given_rawboost(self, params: RawBoostParams | None) -> dict[str, Any] | None:
        return None if params is None else params.model_dump(exclude_unset=True)

    @field_serializer("pipeline")
    def _given_pipeline(self, root: Compose | None) -> dict[str, Any] | None:
        return None if root is None else root.dump_body()

    @model_serializer(mode="wrap")
    def _given_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


def parse_paths(raw: Any, where: str = "augment.paths") -> dict[str, AugmentPath]:
    """The YAML mapping name -> path body -> typed paths (already typed entries pass)."""
    if not isinstance(raw, Mapping) or not raw:
        raise UserError(f"{where}: must be a non-empty mapping of path names to {{rawboost: ...}} or "
                        "{pipeline: ...}")
    out: dict[str, AugmentPath] = {}
    for name, body in raw.items():
        here = f"{where}.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UserError(f"{here}: a path name must be an identifier (letters, digits, _)")
        if name == ORIGINAL_PATH:
            raise UserError(f"{here}: {ORIGINAL_PATH!r} names the original (un-augmented) path; choose another name")
        if isinstance(body, AugmentPath):
            out[name] = body
            continue
        if isinstance(body, Mapping) and body.get("pipeline") is not None:
            body = {**body, "pipeline": parse_pipeline(body["pipeline"], f"{here}.pipeline")}
        if isinstance(body, Mapping) and body.get("rawboost") is not None:
            body = {**body, "rawboost": RawBoostParams.create(body["rawboost"], f"{here}.rawboost")}
        path = parse(AugmentPath, body, here)
        path._where = here
        out[name] = path
    leaves = sum(len(tuple(p.transforms.leaves())) for p in out.values())
    if leaves > MAX_LEAVES:
        raise UserError(f"{where}: {leaves} transforms over all paths; at most {MAX_LEAVES} "
                        "(the applied-transforms mask is one int64 per utterance)")
    return out

