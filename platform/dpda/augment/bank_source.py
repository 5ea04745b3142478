"""The banks the `noise` and `reverb` transforms read: opened (indexed and checked) once per process.

Why a process-wide table: a transform's parameters hold only the bank spec (a config must stay
a plain, picklable, dumpable value), while reading needs the bank's index, which costs one header
read per file and, the first time on a machine, one decode per file (the check). So the trainer
(and `dpda tune`'s pre-flight) opens every bank a pipeline names before training, under the run's
`data.check` policy; a transform's `apply` then finds its sampler here. DataLoader workers are
forked after that, so they inherit the table; a process that did not open the bank (a spawned
worker, a benchmark) opens it on first use with the `fail` policy, its verdict then from the cache.
"""

from __future__ import annotations

from typing import Any

from dpda.data.bank_sampler import BankSampler
from dpda.data.banks import load_bank, parse_bank_spec
from dpda.errors import UserError

_OPEN: dict[str, tuple[BankSampler, dict[str, Any]]] = {}


def check_spec(spec: str, kinds: tuple[str, ...]) -> str:
    """`spec` if it parses as `KIND:PATH` with KIND in `kinds` (a config validator's check: no
    file is touched), else ValueError (pydantic turns it into the key's one line)."""
    try:
        parsed = parse_bank_spec(spec)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    if parsed.kind not in kinds:
        raise ValueError(f"bank spec {spec!r}: expected {' or '.join(k + ':PATH' for k in kinds)}")
    return spec


def open_bank(spec: str, policy: str = "fail", where: str = "bank") -> tuple[BankSampler, dict[str, Any]]:
    """(sampler, verdict as a dict) of the bank, indexed and checked on first use in this process
    (`dpda.data.banks.load_bank`: verdict cache, `policy` fail or skip). Errors name `where`."""
    key = spec.strip()
    if key not in _OPEN:
        try:
            frame, verdict = load_bank(key, policy)
            _OPEN[key] = (BankSampler(frame, name=f"bank {key}"), verdict.to_dict())
        except UserError as exc:
            lines = str(exc).splitlines()  # a failed check: "SPEC: check failed", problems, a count
            text = lines[0] if len(lines) < 3 else f"{lines[1]} ({lines[-1]}; `dpda check {key}` lists them)"
            raise UserError(f"{where}: {text}") from None
    return _OPEN[key]


def sampler(spec: str) -> BankSampler:
    """The bank's sampler (opened now with the `fail` policy if this process has not yet)."""
    return open_bank(spec)[0]


def require_categories(bank: BankSampler, categories: list[str], spec: str, where: str) -> None:
    """Each named category has files in the bank (`*`: any file), else one line naming the key."""
    known = sorted(set(bank.categories))
    for category in categories:
        if category != ANY and category not in known:
            raise UserError(f"{where}.{category}: bank {spec} has no {category!r} files (has {', '.join(known)})")


ANY = "*"
"""A category name meaning every file of the bank (a `csv:` bank without categories)."""


def rows_of(bank: BankSampler, category: str) -> Any:
    """Row numbers of `category` (`*`: all)."""
    return bank.rows(None if category == ANY else category)
