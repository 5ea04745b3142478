"""Typed settings: one-line errors with the dotted key path, for every kind of constraint."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import Field

from dpda.errors import UserError
from dpda.typed import Count, Settings, parse


class Inner(Settings):
    rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    taps: Annotated[Count, Field(ge=1)] = 3
    names: list[str] = Field(default_factory=list)


class Outer(Settings):
    mode: Literal["a", "b"] = "a"
    inner: Inner = Field(default_factory=Inner)
    flag: bool = False
    limit: Annotated[float, Field(ge=0)] | None = None


@pytest.mark.parametrize(("raw", "message"), [
    ({"inner": {"rate": 0}}, "s.inner.rate: must be in (0, 1], got 0"),
    ({"inner": {"rate": 2.5}}, "s.inner.rate: must be in (0, 1], got 2.5"),
    ({"inner": {"rate": float("inf")}}, "s.inner.rate: must be a finite number, got inf"),
    ({"inner": {"rate": "fast"}}, "s.inner.rate: must be a number, got 'fast'"),
    ({"inner": {"taps": 2.5}}, "s.inner.taps: must be an integer, got 2.5"),
    ({"inner": {"taps": 0}}, "s.inner.taps: must be >= 1, got 0"),
    ({"inner": {"names": "x"}}, "s.inner.names: must be a list, got str"),
    ({"inner": {"names": ["x", 3]}}, "s.inner.names[1]: must be a string, got 3"),
    ({"inner": {"rates": 1}}, "s.inner.rates: unknown key (allowed: names, rate, taps)"),
    ({"inner": 3}, "s.inner: must be a mapping, got int"),
    ({"mode": "c"}, "s.mode: must be one of a, b, got 'c'"),
    ({"flag": 1}, "s.flag: must be true or false, got 1"),
    ({"limit": -1}, "s.limit: must be >= 0, got -1"),
])
def test_errors_name_the_key_and_the_constraint(raw, message):
    with pytest.raises(UserError) as info:
        parse(Outer, raw, "s")
    assert str(info.value) == message


def test_values_and_defaults():
    got = parse(Outer, {"inner": {"taps": 10.0, "rate": 1}, "limit": None})
    assert got.inner.taps == 10 and isinstance(got.inner.taps, int)
    assert got.inner.rate == 1.0 and isinstance(got.inner.rate, float)
    assert parse(Outer, None) == Outer()
    with pytest.raises(UserError, match=r"^config: must be a mapping, got list$"):
        parse(Outer, [1])
