"""Study SPEC YAML (`dpda study`): a controlled comparison of variants over shared seeds.

Format (studies/conflict.yaml is the project's own)::

    name: conflict                      # experiment folder (default: the file's stem)
    base: ../configs/demo.yaml          # path relative to this file, or an inline mapping
    set:                                # fixed for every run, dotted keys; ${VAR} / ${VAR:-default}
      data.train: ["asvspoof2019:${DPDA_DATA:-data/synth}/LA:train"]
    baseline: published baseline        # every other variant is compared with it, seed by seed
    variants:                           # name -> `--set`-style overrides (a list) or a mapping
      published baseline: {align.rule: none}
      dual, PCGrad: ["align.rule=pcgrad"]
    seeds: [0, 1, 2, 3, 4]              # each run's `seed`: initialisation and batch order
    budget: {epochs: 20, patience: 3}   # the same for every run; the trainer's patience only
    metrics: [dev_eer, conflict_fraction, eval_eer.eval]   # default: every one the runs have
    max_concurrent: 2                   # runs at once (default: what the cluster fits)
    resources: {cpu: 1, gpu: 0, workers: 1}

Why the budget and seeds are not per variant: a difference between two variants is then the
variants' own (same data order, same initialisation, same epochs and patience); variants may
therefore not set `seed`, `optim.epochs` or `optim.patience`. Everything is validated at load,
each run's config through the training config itself, so a bad SPEC is one line naming its key
before Ray starts.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from dpda.dotted import set_dotted
from dpda.errors import UserError
from dpda.tune.search_space import TuneSettings, _check_key_syntax, _Errors, _expand, _load_base, name_problem
from dpda.typed import Settings, describe
from dpda.yaml_io import load_yaml, read_yaml

# what the variants may not change: the study sets them alike for every run
FIXED_KEYS = ("seed", "optim.epochs", "optim.patience")
# metric name -> what it is (its value is read from each run's files: dpda_analysis.study)
BASE_METRICS = {
    "dev_eer": "the saved (averaged) model's dev EER (summary.json final_dev_eer)",
    "best_dev_eer": "the lowest dev EER of any epoch",
    "conflict_fraction": "share of the run's training steps whose two path gradients conflict (telemetry)",
    "epochs": "epochs run (the trainer's patience may stop a run before the budget)",
}
EVAL_PREFIX = "eval_eer."  # + a data.eval set's name: the saved model's EER on that set


class Budget(Settings):
    """Epochs and the trainer's early-stopping patience, alike for every run."""

    epochs: Annotated[int, Field(ge=1)]
    patience: Annotated[int, Field(ge=1)] | None = None  # None: the base config's


class Resources(Settings):
    cpu: Annotated[float, Field(ge=0)] = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0
    workers: Annotated[int, Field(ge=1)] = 1


class StudyFile(Settings):
    """The SPEC's top level, as written (checked key by key; the rest in `parse_study`)."""

    name: str | None = None
    base: str | dict[str, Any] | None = None
    set: dict[str, Any] = Field(default_factory=dict)
    baseline: Annotated[str, Field(min_length=1)]
    variants: Annotated[dict[str, list[str] | dict[str, Any]], Field(min_length=2)]
    seeds: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2)]
    budget: Budget
    metrics: Annotated[list[str], Field(min_length=1)] | None = None
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    max_failures: Annotated[int, Field(ge=-1)] = 0
    resources: Resources = Field(default_factory=Resources)


@dataclass(frozen=True)
class StudyGrid:
    """A validated study: runs are (variant, seed) pairs. It has what `dpda.tune.tuner.run_trial`
    needs of a search space (`source`, `tune`, `trial_config`), so a study's trials are trained
    exactly as a search's; a plain frozen dataclass, so Ray can pickle it."""

    source: str
    name: str
    base: dict[str, Any]  # validated, with `set` and the budget
    variants: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]  # name -> overrides, in file order
    baseline: str
    seeds: tuple[int, ...]
    metrics: tuple[str, ...]
    tune: TuneSettings

    @property
    def variant_names(self) -> list[str]:
        return [name for name, _ in self.variants]

    def run_config(self, variant: str, seed: int) -> dict[str, Any]:
        """One run's nested config: the base, the variant's overrides, the seed."""
        out = copy.deepcopy(self.base)
        for key, value in dict(self.variants)[variant]:
            set_dotted(out, key, copy.deepcopy(value))
        out["seed"] = int(seed)
        return out

    def trial_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The config of the Tune trial whose grid point is `params` ({"variant": ..., "seed": ...})."""
        return self.run_config(str(params["variant"]), int(params["seed"]))

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between an interrupted study and its resumption."""
        return json.loads(json.dumps({"base": self.base, "variants": self.variants, "baseline": self.baseline,
                                      "seeds": self.seeds, "workers": self.tune.workers}, default=str))


def load_study(path: str | os.PathLike, variables: Mapping[str, str] | None = None) -> StudyGrid:
    """Read and validate a SPEC file; `variables` override the environment for ${VAR}."""
    path = Path(path)
    return parse_study(read_yaml(path, "study spec"), source=str(path), base_dir=path.parent, variables=variables)


def parse_study(raw: Any, source: str = "<study>", base_dir: Path | None = None,
                variables: Mapping[str, str] | None = None) -> StudyGrid:
    """Validate a parsed SPEC: every error is `SOURCE: key: problem`, one line."""
    from dpda.train.config import config_from_dict

    err = _Errors(source)
    if not isinstance(raw, Mapping):
        err("", "must be a mapping with `baseline`, `variants`, `seeds` and `budget`")
    try:
        spec = StudyFile.model_validate(dict(raw))
    except ValidationError as exc:
        raise UserError(f"{source}: {describe(exc.errors()[0], StudyFile)}") from None
    env = {**os.environ, **(variables or {})}
    name = spec.name if spec.name is not None else (Path(source).stem if source != "<study>" else "dpda-study")
    problem = name_problem(name)
    if problem:
        err("name", problem)
    if spec.baseline not in spec.variants:
        err("baseline", f"{spec.baseline!r} is not one of the variants ({', '.join(spec.variants)})")
    if len(set(spec.seeds)) != len(spec.seeds):
        err("seeds", f"must be distinct, got {spec.seeds}")

    base = _load_base(_expand(spec.base, env, err, "base"), base_dir, err)
    for key, value in _expand(spec.set, env, err, "set").items():
        _check_key_syntax(key, err, f"set.{key}")
        if key in FIXED_KEYS:
            err(f"set.{key}", "is set by the study (`seeds`, `budget`), not here")
        set_dotted(base, key, value)
    set_dotted(base, "optim.epochs", spec.budget.epochs)
    if spec.budget.patience is not None:
        set_dotted(base, "optim.patience", spec.budget.patience)
    try:
        full = config_from_dict(base, source=f"{source} (base + set + budget)").to_dict()
    except UserError as exc:
        raise UserError(str(exc)) from None

    variants = tuple((name_, _overrides(name_, body, env, err)) for name_, body in spec.variants.items())
    tune = TuneSettings.validated({"metric": "dev_eer", "max_concurrent": spec.max_concurrent,
                                   "max_failures": spec.max_failures, **spec.resources.model_dump()},
                                  {f: f"resources.{f}" for f in ("cpu", "gpu", "workers")}, "resources")
    grid = StudyGrid(source=source, name=name, base=full, variants=variants, baseline=spec.baseline,
                     seeds=tuple(spec.seeds), metrics=(), tune=tune)
    for variant, _ in variants:  # every run's config is one the trainer accepts
        try:
            config_from_dict(grid.run_config(variant, spec.seeds[0]), source=f"{source}: variants.{variant}")
        except UserError as exc:
            raise UserError(str(exc)) from None
    metrics = _metrics(spec.metrics, full, err)
    return StudyGrid(**{**grid.__dict__, "metrics": metrics})


def _overrides(variant: str, body: list[str] | dict[str, Any], env: Mapping[str, str],
               err: _Errors) -> tuple[tuple[str, Any], ...]:
    """A variant's overrides as (dotted key, value) pairs: `KEY=VALUE` items (the value is YAML, as
    with --set) or a mapping."""
    where = f"variants.{variant}"
    pairs: list[tuple[str, Any, str]] = []
    if isinstance(body, dict):
        pairs = [(k, v, f"{where}.{k}") for k, v in body.items()]
    else:
        for i, item in enumerate(body):
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                err(f"{where}[{i}]", f"expected KEY=VALUE, got {item!r}")
            try:
                parsed = load_yaml(value, f"{where}[{i}]", lines=False)
            except UserError as exc:
                err(f"{where}[{i}]", str(exc))
            pairs.append((key.strip(), parsed, f"{where}[{i}]"))
    out = []
    for key, value, at in pairs:
        _check_key_syntax(key, err, at)
        if key in FIXED_KEYS:
            err(at, f"{key} is the study's (`seeds`, `budget`), alike for every variant")
        out.append((key, _expand(value, env, err, at)))
    return tuple(out)


def available_metrics(base: Mapping[str, Any]) -> list[str]:
    """The metrics a study of this base config can compare."""
    return [*BASE_METRICS, *(EVAL_PREFIX + name for name in (base.get("data", {}).get("eval") or {}))]


def _metrics(asked: list[str] | None, base: Mapping[str, Any], err: _Errors) -> tuple[str, ...]:
    allowed = available_metrics(base)
    if asked is None:
        return tuple(m for m in allowed if m not in ("best_dev_eer", "epochs"))
    for i, metric in enumerate(asked):
        if metric not in allowed:
            err(f"metrics[{i}]", f"unknown metric {metric!r} (this base config has: {', '.join(allowed)})")
    if len(set(asked)) != len(asked):
        err("metrics", "must be distinct")
    return tuple(asked)
