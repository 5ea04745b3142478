"""Search-space YAML: a base training config, distributions over dotted config keys, Tune settings.

Format (every key optional except `search`)::

    name: dpda-demo                   # default experiment name
    base: ../configs/demo.yaml        # path relative to this file, or an inline mapping
    set:                              # fixed overrides, dotted keys; ${VAR} / ${VAR:-default}
      data.train: ${DPDA_DATA}/train  #   expand from the environment or the CLI (--data)
    search:                           # dotted config key -> one distribution
      optim.lr: {loguniform: [1.0e-5, 1.0e-2]}
      align.rule: {choice: [none, pcgrad, gradvac]}
      align.options.beta: {uniform: [0.01, 0.9], when: {align.rule: [gradvac]}}
      augment.rawboost.minF: {int: [20, 2000]}
      augment.rawboost.maxF: {int: [500, 6000], offset_from: augment.rawboost.minF}
    tune:
      num_samples: 8
      metric: dev_eer                 # or several: objectives: [{metric: eer}, {metric: min_dcf}]
      mode: min
      seed: 0
      max_concurrent: 2
      max_failures: 1
      scheduler: {grace_period: 1, reduction_factor: 2, max_t: 3}
      resources: {cpu: 1, gpu: 0, workers: 1}

Distributions (forms and checks: dpda.tune.distributions): `uniform` (optional `step`, a divisor
of high - low), `loguniform` (lo > 0), `int` (optional `log: true`, or `step`),
`choice` (a list of scalars, or a mapping NAME -> any value: the sampler and `when` see the
names, the trial's config the value, e.g. a set of `augment.paths`). `when` makes a key conditional (sampled only if every named key has one of the
listed values), so Optuna's define-by-run API sees a real tree-structured space (TPE does not
waste samples on parameters that do nothing). `offset_from` samples a non-negative width and adds
it to another key, which keeps pairs such as minF/maxF ordered without rejection sampling.
A min/max pair searched independently is rejected when its ranges can cross.

Loading validates everything up front and raises UserError naming the file and key path;
each distribution's end points are run through the training config validator, so a typo in a
key or a value the config rejects fails before Ray starts.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from dpda.dotted import KEY_PATTERN, get_dotted, has_dotted, set_dotted
from dpda.errors import UserError
from dpda.tune.distributions import Distribution, parse_distribution
from dpda.tune.objectives import Objective, check_sets, parse_metric
from dpda.typed import Settings, describe
from dpda.yaml_io import read_yaml

TOP_KEYS = ("name", "base", "set", "search", "tune")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PAIR = (re.compile(r"^min(.+)$"), re.compile(r"^(.+)min$"))


def _as_tuple(value: Any) -> Any:
    """YAML gives a list; the frozen settings keep a tuple (hashable, picklable with the searcher)."""
    return tuple(value) if isinstance(value, list) else value


class TuneSettings(Settings):
    """The `tune:` section, flat (`scheduler.*` and `resources.*` fields sit beside the others;
    `TUNE_LAYOUT` says where each sits in the YAML). `max_t` None means the base config's
    optim.epochs. Frozen and picklable: Ray keeps it with the searcher state."""

    model_config = ConfigDict(frozen=True)

    num_samples: Annotated[int, Field(ge=1)] = 8
    # what the search optimises (dpda.tune.objectives): one `metric` (default dev_eer), or a list
    # of `objectives` for a multi-objective search; either way a dev metric of the saved model
    metric: Annotated[str, Field(min_length=1)] | None = None
    objectives: Annotated[tuple[Objective, ...], BeforeValidator(_as_tuple)] = ()
    mode: Literal["min", "max"] = "min"
    seed: Annotated[int, Field(ge=0)] = 0
    max_concurrent: Annotated[int, Field(ge=1)] | None = None
    max_failures: Annotated[int, Field(ge=-1)] = 0
    # Accepted for older search spaces, no effect: the storage keeps exactly last.pt + the
    # checkpoint.average_best best epochs per trial (dpda.train.checkpoint_store).
    keep_checkpoints: Annotated[int, Field(ge=1)] = 2
    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[float, Field(gt=1)] = 2.0
    max_t: Annotated[int, Field(ge=1)] | None = None
    cpu: Annotated[float, Field(ge=0)] = 1.0
    gpu: Annotated[float, Field(ge=0)] = 0.0
    workers: Annotated[int, Field(ge=1)] = 1

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str | None) -> str | None:
        if metric is not None:
            try:
                parse_metric(metric, "")
            except UserError as exc:
                raise ValueError(str(exc).removeprefix(": ")) from None
        return metric

    @property
    def goals(self) -> tuple[Objective, ...]:
        """The objectives, in order (the first one drives ASHA and best_config.yaml)."""
        return self.objectives or (parse_metric(self.metric or "dev_eer"),)

    @property
    def key(self) -> str:
        """The first objective's reported key: Tune's metric (ASHA, the best trial)."""
        return self.goals[0].key

    @model_validator(mode="after")
    def _consistent(self) -> TuneSettings:
        if self.metric is not None and self.objectives:
            raise ValueError("give tune.metric or tune.objectives, not both")
        if len({g.key for g in self.objectives}) != len(self.objectives):
            raise ValueError("an objective is listed twice in tune.objectives")
        if self.cpu == 0 and self.gpu == 0:
            raise ValueError("a trial (or each worker) needs cpu > 0 or gpu > 0")
        if self.max_t is not None and self.max_t < self.grace_period:
            raise ValueError(f"scheduler max_t ({self.max_t}) must be >= grace_period ({self.grace_period})")
        return self

    @classmethod
    def validated(cls, values: Mapping[str, Any], names: Mapping[str, str], where: str) -> TuneSettings:
        """Validate flat values; a field's error names it as the user wrote it (`names`: field ->
        YAML key or command-line option), an error across fields names `where`."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            error = exc.errors()[0]
            if not error["loc"]:
                raise UserError(describe(error, cls, where)) from None
            field = str(error["loc"][0])
            raise UserError(names.get(field, field) + describe(error, cls)[len(field):]) from None

    def with_changes(self, options: Mapping[str, str] | None = None, **changes: Any) -> TuneSettings:
        """A copy with `changes`, validated like the file; an error names the command-line option
        that set the field (`options`: field -> option) or, across fields, all of them."""
        options = options or {}
        where = " / ".join(options[k] for k in changes if k in options) or "tune"
        return TuneSettings.validated({**self.model_dump(), **changes}, options, where)


# Where the flat TuneSettings fields sit in the YAML `tune:` section.
TUNE_LAYOUT: dict[str, tuple[str, ...]] = {
    "scheduler": ("grace_period", "reduction_factor", "max_t"),
    "resources": ("cpu", "gpu", "workers"),
}


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Calling it with an optuna Trial is the define-by-run function.

    It is a plain frozen dataclass so Ray can pickle it with the searcher state (Tuner.restore).
    """

    source: str
    name: str
    base: dict[str, Any]
    params: tuple[Distribution, ...]
    tune: TuneSettings = field(default_factory=TuneSettings)

    def __call__(self, trial: Any) -> None:
        """Define-by-run: suggest the active parameters, each under its config key as it is used
        (an offset key as its partner's value plus the width: Distribution.suggest)."""
        values: dict[str, Any] = {}
        for p in self.params:
            if not self._active(p, values):
                continue
            anchor = 0
            if p.offset_from:
                anchor = values[p.offset_from] if p.offset_from in values else get_dotted(self.base, p.offset_from)
            values[p.key] = p.suggest(trial, anchor)

    def _active(self, p: Distribution, values: Mapping[str, Any]) -> bool:
        for key, allowed in p.when:
            current = values[key] if key in values else get_dotted(self.base, key)
            if current not in allowed:
                return False
        return True

    def trial_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Nested config dict for one trial: the base with the sampled keys set.

        `params` is the (flat, dotted-key) config Tune hands the trainable; keys the space does
        not search are ignored; inactive conditionals keep the base.
        """
        out = copy.deepcopy(self.base)
        for p in self.params:
            if p.key in params:
                set_dotted(out, p.key, p.value_of(_plain(params[p.key])))
        return out

    def value_range(self, key: str) -> tuple[float, float] | None:
        """(min, max) a numeric key can take in a trial (an offset key's follows its partner's);
        None for a non-numeric one."""
        return _value_range(key, {p.key: p for p in self.params}, self.base)

    def max_epochs(self) -> int:
        """Largest epoch count a trial can run (ASHA's max_t default)."""
        if self.tune.max_t is not None:
            return self.tune.max_t
        for p in self.params:
            if p.key == "optim.epochs":
                return int(max(p.end_points()))
        return int(get_dotted(self.base, "optim.epochs"))


def _plain(value: Any) -> Any:
    """numpy scalars from samplers -> Python scalars (config validation and YAML dumps)."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (list, dict, str)) else value


# --------------------------------------------------------------------------- loading

def load_search_space(
    path: str | os.PathLike,
    variables: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """Read and validate a search-space YAML; `variables` override the environment for ${VAR};
    `overrides` (dotted key -> value, e.g. from the command line) apply after the file's `set:`."""
    path = Path(path)
    source = str(path)
    raw = read_yaml(path, "search space")
    return parse_search_space(raw, source=source, base_dir=path.parent, variables=variables, overrides=overrides)


def parse_search_space(
    raw: Any,
    source: str = "<search space>",
    base_dir: Path | None = None,
    variables: Mapping[str, str] | None = None,
    validate_config: Callable[[dict[str, Any], str], dict[str, Any]] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """Validate an already-parsed mapping. `validate_config(d, source) -> full dict` defaults to
    dpda.train.config (config_from_dict(...).to_dict()); it fills defaults and rejects unknown keys.
    """
    env = {**os.environ, **(variables or {})}
    err = _Errors(source)
    if not isinstance(raw, Mapping):
        err("", "must be a mapping with a `search:` section")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        err(unknown[0], f"unknown key (allowed: {', '.join(TOP_KEYS)})")
    raw = _expand(raw, env, err, "")
    validate_config = validate_config or _train_config_validator

    base = _load_base(raw.get("base"), base_dir, err)
    fixed = raw.get("set") or {}
    if not isinstance(fixed, Mapping):
        err("set", "must be a mapping of dotted config keys to values")
    for key, value in fixed.items():
        _check_key_syntax(key, err, f"set.{key}")
        set_dotted(base, key, value)
    for key, value in (overrides or {}).items():
        _check_key_syntax(key, err, f"override {key}")
        set_dotted(base, key, value)
    try:
        full = validate_config(base, f"{source} (base + set)")
    except UserError as exc:
        raise UserError(str(exc)) from None  # already starts with "<file> (base + set): <key>:"

    search = raw.get("search")
    if not isinstance(search, Mapping) or not search:
        err("search", "must be a non-empty mapping of dotted config keys to distributions")
    params: list[Distribution] = []
    for key, spec in search.items():
        params.append(_parse_distribution(key, spec, full, params, err))
    _check_pairs(params, full, err)
    tune = _parse_tune(raw.get("tune") or {}, err)

    name = raw.get("name", Path(source).stem if source != "<search space>" else "dpda-search")
    problem = name_problem(name)
    if problem:
        err("name", problem)
    space = SearchSpace(source=source, name=name, base=full, params=tuple(params), tune=tune)
    problem = check_sets(tune.objectives, full)
    if problem:
        err("", problem)
    if tune.max_t is None and not has_dotted(full, "optim.epochs"):
        err("tune.scheduler.max_t", "required: the base config has no optim.epochs")
    _probe(space, validate_config, err)
    return space


def name_problem(name: object) -> str | None:
    """Why `name` cannot name an experiment directory, None when it can. One rule for a search
    space's `name:` and `dpda tune --name`: a single path segment, so the experiment stays
    inside the storage (no '/', never '.' or '..')."""
    if isinstance(name, str) and _NAME.fullmatch(name) and name not in (".", ".."):
        return None
    return "must be letters, digits, '_', '.', '-', and not '.' or '..' (it names the experiment directory)"


def _train_config_validator(d: dict[str, Any], source: str) -> dict[str, Any]:
    from dpda.train.config import config_from_dict

    return config_from_dict(d, source=source).to_dict()


class _Errors:
    """Raise UserError as `file: key.path: message`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, where: str, message: str) -> None:
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        raise UserError(prefix + message)


def _expand(node: Any, env: Mapping[str, str], err: _Errors, where: str) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string; unset variables name the key."""
    if isinstance(node, Mapping):
        return {k: _expand(v, env, err, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, env, err, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        err(where, f"variable ${{{name}}} is not set (export it, or pass it on the command line, e.g. --data)")
        return ""

    return _VAR.sub(sub, node)


def _load_base(base: Any, base_dir: Path | None, err: _Errors) -> dict[str, Any]:
    if base is None:
        return {}
    if isinstance(base, Mapping):
        return copy.deepcopy(dict(base))
    if not isinstance(base, str):
        err("base", "must be a config file path or an inline mapping")
    path = Path(base)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        loaded = read_yaml(path, "config file")
    except UserError as exc:
        err("base", str(exc))
    if loaded is None:
        return {}
    if not isinstance(loaded, Mapping):
        err("base", f"{path} must hold a mapping")
    return copy.deepcopy(dict(loaded))


def _check_key_syntax(key: Any, err: _Errors, where: str) -> None:
    if not isinstance(key, str) or not re.fullmatch(KEY_PATTERN, key):
        err(where, "must be a dotted config key such as optim.lr (or augment.pipeline.NAME.p, snr[0])")


def _parse_distribution(
    key: Any, spec: Any, full: Mapping[str, Any], earlier: list[Distribution], err: _Errors
) -> Distribution:
    """One `search:` entry: its own shape (dpda.tune.distributions), then what it refers to:
    the key in the base config, `when` keys and values, the `offset_from` anchor."""
    where = f"search.{key}"
    _check_key_syntax(key, err, where)
    parent = key.rpartition(".")[0]
    if not has_dotted(full, key) and not (parent and isinstance(_get_or_none(full, parent), Mapping)):
        err(where, "no such config key")
    try:
        dist = parse_distribution(key, spec, where)
    except UserError as exc:
        err("", str(exc))
    by_key = {p.key: p for p in earlier}
    for ckey, cvals in dist.when:
        cwhere = f"{where}.when.{ckey}"
        if ckey not in by_key and not has_dotted(full, ckey):
            err(cwhere, "must name an earlier search key or a key of the base config")
        ref = by_key.get(ckey)
        if ref is not None and ref.kind == "choice":
            bad = [v for v in cvals if v not in ref.choices]
            if bad:
                err(cwhere, f"{bad[0]!r} is not one of the choices of search.{ckey}")

    offset_from = dist.offset_from
    if offset_from is not None:
        owhere = f"{where}.offset_from"
        if offset_from not in by_key and not has_dotted(full, offset_from):
            err(owhere, "must name an earlier search key or a key of the base config")
        anchor = by_key.get(offset_from)
        if anchor is not None and anchor.kind == "choice":
            err(owhere, f"search.{offset_from} must be numeric")
        if anchor is not None and anchor.when and not has_dotted(full, offset_from):
            mine = dict(dist.when)
            for akey, avals in anchor.when:
                if akey not in mine or not set(mine[akey]) <= set(avals):
                    err(f"{where}.when", f"must be at least as strict as search.{offset_from}.when "
                        f"(the base config has no {offset_from} to fall back on)")
    return dist


def _get_or_none(tree: Mapping[str, Any], key: str) -> Any:
    try:
        return get_dotted(tree, key)
    except KeyError:
        return None


def _value_range(key: str, params: Mapping[str, Distribution], full: Mapping[str, Any]) -> tuple[float, float] | None:
    """(min, max) a key can take in a trial, or None if not numeric / derived."""
    p = params.get(key)
    if p is None:
        v = _get_or_none(full, key)
        return (v, v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    if p.kind == "choice":
        nums = [v for v in p.choices if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return (min(nums), max(nums)) if len(nums) == len(p.choices) else None
    if p.offset_from:
        anchor = _value_range(p.offset_from, params, full)
        return None if anchor is None else (anchor[0] + p.low, anchor[1] + p.high)
    return (p.low, p.high)


def _check_pairs(params: list[Distribution], full: Mapping[str, Any], err: _Errors) -> None:
    """A searched minX (or Xmin) must never exceed its maxX, unless one is offset from the other."""
    by_key = {p.key: p for p in params}
    for p in params:
        head, _, leaf = p.key.rpartition(".")
        for pattern in _PAIR:
            m = pattern.match(leaf)
            if not m:
                continue
            max_leaf = "max" + m.group(1) if pattern is _PAIR[0] else m.group(1) + "max"
            max_key = f"{head}.{max_leaf}" if head else max_leaf
            if max_key not in by_key and not has_dotted(full, max_key):
                continue
            partner = by_key.get(max_key)
            if partner is not None and partner.offset_from == p.key:
                continue
            lo_range, hi_range = _value_range(p.key, by_key, full), _value_range(max_key, by_key, full)
            if lo_range and hi_range and lo_range[1] > hi_range[0]:
                err(
                    f"search.{p.key}",
                    f"can exceed {max_key} (up to {lo_range[1]} vs as low as {hi_range[0]}); "
                    f"narrow the ranges or search {max_key} with offset_from: {p.key}",
                )


def _section(raw: Any, keys: tuple[str, ...], err: _Errors, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        err(where, "must be a mapping")
    extra = sorted(set(raw) - set(keys))
    if extra:
        err(f"{where}.{extra[0]}", f"unknown key (allowed: {', '.join(keys)})")
    return raw


def _parse_tune(raw: Any, err: _Errors) -> TuneSettings:
    """The nested YAML section -> TuneSettings; errors name the YAML key (`tune.scheduler.max_t`)."""
    nested = {f for fs in TUNE_LAYOUT.values() for f in fs}
    top = [f for f in TuneSettings.model_fields if f not in nested]
    raw = _section(raw, (*top, *TUNE_LAYOUT), err, "tune")
    flat = {k: v for k, v in raw.items() if k not in TUNE_LAYOUT}
    yaml_key = {f: f"tune.{f}" for f in top}
    for section, names in TUNE_LAYOUT.items():
        flat.update(_section(raw.get(section) or {}, names, err, f"tune.{section}"))
        yaml_key.update({f: f"tune.{section}.{f}" for f in names})
    try:
        return TuneSettings.validated({k: v for k, v in flat.items() if v is not None}, yaml_key, "tune")
    except UserError as exc:
        raise UserError(f"{err.source}: {exc}") from None


def _probe(space: SearchSpace, validate_config: Callable[..., Any], err: _Errors) -> None:
    """Run each distribution's end points through the config validator, one key at a time, with
    its `when` conditions (and theirs) satisfied, so rule-specific options are probed under a rule
    that accepts them."""
    by_key = {p.key: p for p in space.params}

    def requirements(p: Distribution, seen: frozenset[str] = frozenset()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ckey, allowed in p.when:
            if ckey in by_key and ckey not in seen:
                out.update(requirements(by_key[ckey], seen | {p.key}))
            out[ckey] = allowed[0]
        return out

    for p in space.params:
        for v in p.end_points():
            values = requirements(p)
            if p.offset_from:
                anchor = by_key.get(p.offset_from)
                start = anchor.low if anchor is not None and anchor.kind != "choice" else get_dotted(space.base, p.offset_from)
                values[p.offset_from] = start
                v = start + v
            values[p.key] = v
            trial = copy.deepcopy(space.base)
            for key, value in values.items():
                set_dotted(trial, key, by_key[key].value_of(value) if key in by_key else value)
            try:
                validate_config(trial, f"{space.source} search.{p.key}={v!r}")
            except UserError as exc:
                err(f"search.{p.key}", f"value {v!r} is rejected by the training config: {exc}")
