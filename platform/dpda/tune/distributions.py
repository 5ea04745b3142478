"""One searched key's distribution: the YAML forms as pydantic models, and the validated result.

Why pydantic: the forms (`{uniform: [lo, hi], step}`, `{loguniform: [lo, hi]}`,
`{int: [lo, hi], log, step}`, `{choice: [...]}` or `{choice: {NAME: value, ...}}`, each with
optional `when` / `offset_from`) are a
union tagged by which kind key the mapping holds; the models carry the shape and bound checks and
`dpda.typed.describe` turns the first error into the usual `dotted.key: problem` line. What needs
the rest of the space (does `when` name an earlier key, is `offset_from`'s anchor numeric, does
the key exist in the base config) is checked by `dpda.tune.search_space`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from dpda.errors import UserError
from dpda.typed import Settings, describe, key_path

KINDS = ("uniform", "loguniform", "int", "choice")


@dataclass(frozen=True)
class Distribution:
    """One searched key. `when` holds (dotted key, allowed values) pairs, all of which must hold."""

    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()
    log: bool = False
    step: float | int | None = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    offset_from: str | None = None
    # A choice among named values (`{choice: {NAME: value}}`): the sampler sees the names
    # (`choices`), the trial's config gets the value (`value_of`), which may be any YAML value.
    named: tuple[tuple[str, Any], ...] = ()

    def value_of(self, drawn: Any) -> Any:
        """The config value of a drawn value: the named value for a named choice, else itself."""
        if not self.named:
            return drawn
        return copy.deepcopy(dict(self.named)[drawn])

    def suggest(self, trial: Any, anchor: float | int = 0) -> Any:
        """Draw from an optuna.Trial (or Ray's captor wrapping one), under the config key. An
        `offset_from` key is drawn as the value used, over [anchor + low, anchor + high] (the
        anchor being its partner's value in this trial): the same draw as anchor + a width from
        [low, high] (a linear range: a log scale is refused for offsets), stored as it is used,
        so Optuna's study, optuna-dashboard and Tune's config all hold the key's real value."""
        name, low, high = self.key, self.low, self.high
        if self.kind == "choice":
            return trial.suggest_categorical(name, list(self.choices))
        if self.offset_from:
            low, high = anchor + low, anchor + high
        if self.kind == "int":
            return trial.suggest_int(name, int(low), int(high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, float(low), float(high), step=self.step, log=self.kind == "loguniform")

    def end_points(self) -> list[Any]:
        """Values used to probe the config validator at load time."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


# --------------------------------------------------------------------------- YAML forms

def _pair(value: Any) -> Any:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("must be [low, high]")
    return tuple(value)


def _listed(value: Any) -> Any:
    """`when: {key: value}` is short for `when: {key: [value]}`."""
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ValueError("needs at least one value")
    return values


def _choices(value: Any) -> Any:
    if isinstance(value, Mapping) and value:
        if not all(isinstance(k, str) for k in value):
            raise ValueError("a mapping of choices needs string names")
        return dict(value)
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list (or a mapping of names to values)")
    return value


def _scalar(value: Any) -> Any:
    if not (value is None or isinstance(value, (bool, int, float, str))):
        raise ValueError("must be a scalar (str, number, bool, null)")
    return value


Scalar = Annotated[Any, AfterValidator(_scalar)]
FloatPair = Annotated[tuple[float, float], BeforeValidator(_pair)]
IntPair = Annotated[tuple[int, int], BeforeValidator(_pair)]


class _Spec(Settings):
    """Options every kind takes; `kind` is the key that holds the kind's values."""

    model_config = ConfigDict(frozen=True)
    kind: ClassVar[str]

    when: dict[str, Annotated[list[Scalar], BeforeValidator(_listed)]] = {}
    offset_from: str | None = None

    def distribution(self, key: str) -> Distribution:
        when = tuple((k, tuple(v)) for k, v in self.when.items())
        return Distribution(key=key, kind=self.kind, when=when, offset_from=self.offset_from, **self._fields())

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError


def _check_range(pair: tuple[Any, Any], info: ValidationInfo, log: bool) -> tuple[Any, Any]:
    """low < high; a log range above 0; an offset (a width added to another key) not negative."""
    lo, hi = pair
    if not lo < hi:
        raise ValueError("low must be below high")
    if log and lo <= 0:
        raise ValueError("a log range must be > 0")
    if info.data.get("offset_from") is not None and lo < 0:
        raise ValueError("an offset (width) range must be >= 0")
    if info.data.get("offset_from") is not None and log:
        raise ValueError("an offset (width) is searched on a linear scale; drop the log scale")
    return pair


def _check_step(low: Any, high: Any, step: Any) -> None:
    """Optuna would lower `high` to the last multiple of `step` above `low` with only a warning;
    refuse instead (decimal arithmetic on the written values, as Optuna's own test)."""
    if step is None:
        return
    width = Decimal(str(high)) - Decimal(str(low))
    if width % Decimal(str(step)) != 0:
        raise ValueError(f"high - low ({width}) must be a multiple of step ({step})")


class UniformSpec(_Spec):
    kind: ClassVar[str] = "uniform"
    step: Annotated[float, Field(gt=0)] | None = None
    uniform: FloatPair

    @field_validator("uniform")
    @classmethod
    def _range(cls, pair: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        _check_range(pair, info, log=False)
        _check_step(*pair, info.data.get("step"))
        return pair

    def _fields(self) -> dict[str, Any]:
        return {"low": self.uniform[0], "high": self.uniform[1], "step": self.step}


class LogUniformSpec(_Spec):
    kind: ClassVar[str] = "loguniform"
    loguniform: FloatPair

    @field_validator("loguniform")
    @classmethod
    def _range(cls, pair: tuple[float, float], info: ValidationInfo) -> tuple[float, float]:
        return _check_range(pair, info, log=True)

    def _fields(self) -> dict[str, Any]:
        return {"low": self.loguniform[0], "high": self.loguniform[1]}


class IntSpec(_Spec):
    kind: ClassVar[str] = "int"
    log: bool = False
    step: Annotated[int, Field(gt=0)] | None = None
    values: IntPair = Field(alias="int")

    @field_validator("step")
    @classmethod
    def _linear(cls, step: int | None, info: ValidationInfo) -> int | None:
        if step is not None and info.data.get("log"):
            raise ValueError("cannot be combined with a log range")
        return step

    @field_validator("values")
    @classmethod
    def _range(cls, pair: tuple[int, int], info: ValidationInfo) -> tuple[int, int]:
        _check_range(pair, info, log=bool(info.data.get("log")))
        _check_step(*pair, info.data.get("step"))
        return pair

    def _fields(self) -> dict[str, Any]:
        return {"low": self.values[0], "high": self.values[1], "log": self.log, "step": self.step}


class ChoiceSpec(_Spec):
    kind: ClassVar[str] = "choice"
    choice: Annotated[list[Scalar] | dict[str, Any], BeforeValidator(_choices)]

    @field_validator("offset_from")
    @classmethod
    def _no_offset(cls, offset_from: str | None) -> str | None:
        if offset_from is not None:
            raise ValueError("needs a numeric distribution (the width added to the other key)")
        return offset_from

    @field_validator("choice")
    @classmethod
    def _distinct(cls, choices: list[Any] | dict[str, Any]) -> list[Any] | dict[str, Any]:
        if isinstance(choices, list) and len({repr(v) for v in choices}) != len(choices):
            raise ValueError("has duplicate values")
        return choices

    def _fields(self) -> dict[str, Any]:
        if isinstance(self.choice, dict):
            return {"choices": tuple(self.choice), "named": tuple(self.choice.items())}
        return {"choices": tuple(self.choice)}


SPECS: dict[str, type[_Spec]] = {m.kind: m for m in (UniformSpec, LogUniformSpec, IntSpec, ChoiceSpec)}


def _kind_of(spec: Any) -> str | None:
    """The one kind key a spec mapping holds (None: not a mapping, or not exactly one)."""
    kinds = [k for k in KINDS if isinstance(spec, Mapping) and k in spec]
    return kinds[0] if len(kinds) == 1 else None


_ANY_SPEC: TypeAdapter[_Spec] = TypeAdapter(
    Annotated[
        Union[tuple(Annotated[model, Tag(kind)] for kind, model in SPECS.items())],
        Discriminator(
            _kind_of,
            custom_error_type="distribution_kind",
            custom_error_message=f"needs exactly one of {', '.join(KINDS)} (e.g. {{uniform: [low, high]}})",
        ),
    ]
)


def parse_distribution(key: str, spec: Any, where: str) -> Distribution:
    """Validate one `search:` entry; a UserError names `where` (e.g. `search.optim.lr`) + the key
    path of the first problem."""
    try:
        model = _ANY_SPEC.validate_python(spec)
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # not a mapping with one kind key
            raise UserError(f"{where}: {error['msg']}") from None
        kind, loc = error["loc"][0], tuple(part for part in error["loc"][1:] if part != "[key]")
        if error["type"] == "extra_forbidden":
            allowed = sorted(f.alias or name for name, f in SPECS[kind].model_fields.items())
            raise UserError(f"{key_path(where, loc)}: unknown option for {kind} (allowed: {', '.join(allowed)})") from None
        raise UserError(describe({**error, "loc": loc}, SPECS[kind], where)) from None
    return model.distribution(key)
