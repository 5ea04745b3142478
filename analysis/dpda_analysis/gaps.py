"""Telemetry parts that are missing from a run, found from the part numbers alone.

Why: a part deleted (or lost in a copy) in the middle of a run leaves nothing a footer check can
see, and every query quietly counts 31 of 32 steps. The writer (`dpda.telemetry.writer`)
numbers the parts of one attempt with one counter shared by all tables: every number from 0 to
the last is used by some table, and one flush writes its steps part, then its layers part, under
the same number. So, in one attempt, a number below the last is missing when
- no table has it (every part of that flush is gone), or
- the attempt has layers at all and the number has a steps part but no layers part, or the
  reverse (that table's part is gone).
The last number is never missing: the writer may still be writing it, or was killed while it was.

A reader racing a live writer lists the tables one after another, so a flush that lands between
two listings looks half-written. Hence `missing_parts` lists again when one listing shows a gap,
and keeps only the numbers below the first listing's last: by then their flush had finished (a
later number existed), so the second listing saw all of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dpda_analysis import schema

_PART = re.compile(rf"^(?P<run>.*)/{schema.TELEMETRY_DIRNAME}/(?P<table>[^/]+)/{schema.ATTEMPT_PREFIX}(?P<attempt>\d+)"
                   r"/part-(?P<number>\d+)\.parquet$")
_PAIRED = ("steps", "layers")  # written by one flush under one number, steps first


@dataclass(frozen=True)
class MissingPart:
    """A part number of one attempt of a run whose part is absent (`table` None: every table's)."""

    run: str
    attempt: int
    number: int
    table: str | None


def _numbers(files: Iterable[str]) -> dict[tuple[str, int], dict[str, set[int]]]:
    """(run dir, attempt) -> table -> the part numbers present."""
    found: dict[tuple[str, int], dict[str, set[int]]] = {}
    for path in files:
        m = _PART.match(path)
        if m:
            tables = found.setdefault((m["run"], int(m["attempt"])), {})
            tables.setdefault(m["table"], set()).add(int(m["number"]))
    return found


def _last(tables: dict[str, set[int]]) -> int:
    return max(max(numbers) for numbers in tables.values())


def find_missing(files: Iterable[str]) -> list[MissingPart]:
    """The missing parts one listing of part files (paths on their filesystem) shows, sorted."""
    out = []
    for (run, attempt), tables in _numbers(files).items():
        last = _last(tables)
        present = set().union(*tables.values())
        out += [MissingPart(run, attempt, n, None) for n in range(last) if n not in present]
        if "layers" in tables:
            for table, other in (_PAIRED, _PAIRED[::-1]):
                have, pair = tables.get(table, set()), tables[other]
                out += [MissingPart(run, attempt, n, table) for n in pair - have if n < last]
    return sorted(out, key=lambda m: (m.run, m.attempt, m.number, m.table or ""))


def missing_parts(first: Iterable[str], relist: Callable[[], Iterable[str]]) -> list[MissingPart]:
    """The missing parts of a listing of part files, robust to a writer adding parts meanwhile (see
    the module docstring): when `first` shows a gap, `relist()` lists again to confirm it."""
    first = list(first)
    if not find_missing(first):
        return []
    last = {key: _last(tables) for key, tables in _numbers(first).items()}
    return [m for m in find_missing(relist()) if m.number < last.get((m.run, m.attempt), -1)]


def describe(missing: Iterable[MissingPart]) -> list[str]:
    """One line per run naming its missing part numbers (and the table when only one lacks it)."""
    by_run: dict[str, list[str]] = {}
    for m in missing:
        name = f"{schema.ATTEMPT_PREFIX}{m.attempt} {schema.part_name(m.number).removesuffix('.parquet')}"
        by_run.setdefault(m.run, []).append(name + (f" ({m.table})" if m.table else ""))
    return [f"{run}: telemetry part(s) missing, deleted or never copied: {', '.join(parts)}; their rows are absent"
            for run, parts in by_run.items()]
