"""Typed settings on pydantic models, whose errors are one line naming the dotted key.

Why: configs, RawBoost parameters and alignment-rule options are all user input; each is a
pydantic model with its constraints on the fields (no hand-written range checks), and every
validation error becomes the same `optim.lr: must be > 0, got -1` line, so a typo never falls
back to a default silently.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import annotated_types as at
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from dpda.errors import UserError

M = TypeVar("M", bound=BaseModel)


class Settings(BaseModel):
    """Strict: no type coercion except int -> float, unknown keys and NaN/inf refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _integral(value: Any) -> Any:
    """10.0 -> 10: YAML writers and Optuna hand counts over as floats; 10.5 stays an error."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer that also accepts an integral float.
Count = Annotated[int, BeforeValidator(_integral)]


def relation_error(key: str, problem: str) -> PydanticCustomError:
    """Raise it from a model validator checking fields against each other: the one line then
    names `key` under the section (`augment.rawboost.SNRmin: 50 must be <= SNRmax = 10`)."""
    return PydanticCustomError("relation", "{key}: {problem}", {"key": key, "problem": problem})


def parse(model: type[M], raw: Any, where: str = "") -> M:
    """Validate a mapping into `model`; the UserError names `where` + the key path of the first
    problem (`where` is the dotted prefix of this section, e.g. "augment.rawboost")."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise UserError(f"{where or 'config'}: must be a mapping, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise UserError(describe(exc.errors()[0], model, where)) from None


def key_path(where: str, loc: tuple[Any, ...]) -> str:
    path = where
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe(error: Mapping[str, Any], model: type[BaseModel], where: str = "") -> str:
    """One line for one pydantic error: `key.path: problem, got value`."""
    loc = tuple(error["loc"])
    path = key_path(where, loc)
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        allowed = (", ".join(sorted(owner.model_fields)) or "none") if owner else "see the docs"
        return f"{path}: unknown key (allowed: {allowed})"
    if kind == "missing":
        return f"{path}: is required"
    if kind == "relation":
        return f"{key_path(where, (*loc, ctx['key']))}: {ctx['problem']}"
    if kind in ("list_type", "dict_type", "model_type", "model_attributes_type", "tuple_type"):
        shape = "a list" if kind in ("list_type", "tuple_type") else "a mapping"
        return f"{path}: must be {shape}, got {type(value).__name__}"
    problem = _problem(kind, ctx, error, _bounds(model, loc))
    if not loc:  # a check across fields: the input is the whole section, not worth repeating
        return f"{path}: {problem}" if path else problem
    return f"{path}: {problem}, got {value!r}"


_TYPES = {
    "float_type": "must be a number", "float_parsing": "must be a number",
    "int_type": "must be an integer", "int_parsing": "must be an integer", "int_from_float": "must be an integer",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be a string", "finite_number": "must be a finite number",
    "string_too_short": "must not be empty",
}
_COMPARE = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _problem(kind: str, ctx: Mapping[str, Any], error: Mapping[str, Any], bounds: tuple[str, str] | None) -> str:
    if kind in _TYPES:
        return _TYPES[kind]
    if kind in _COMPARE:
        if bounds is not None:
            return f"must be in {bounds[0]}{bounds[1]}"
        limit = next(iter(ctx.values()))
        return f"must be {_COMPARE[kind]} {limit:g}" if isinstance(limit, (int, float)) else error["msg"]
    if kind in ("too_short", "too_long"):
        count = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        return f"must have {'at least' if kind == 'too_short' else 'at most'} {count} items"
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace(" or ", ", ").replace("'", "")
        return f"must be one of {expected}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the field at `loc` (None below a plain dict/list)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _unwrap(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else annotation
    return annotation


def _bounds(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, str] | None:
    """`[0, 1]`-style interval of a field constrained on both sides, for one clear message."""
    owner = _model_at(model, loc[:-1])
    if owner is None or not loc or loc[-1] not in owner.model_fields:
        return None
    low = high = None
    for item in owner.model_fields[loc[-1]].metadata:
        if isinstance(item, (at.Ge, at.Gt)):
            low = f"[{item.ge:g}" if isinstance(item, at.Ge) else f"({item.gt:g}"
        elif isinstance(item, (at.Le, at.Lt)):
            high = f", {item.le:g}]" if isinstance(item, at.Le) else f", {item.lt:g})"
    return (low, high) if low and high else None
