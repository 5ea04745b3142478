"""What dpda prints while it works: the verbosity chosen by -q/-v, info lines and progress.

Why one module: every command honours `--quiet` and `--verbose` the same way, and progress looks
right in both places people read it: a live bar on a terminal, and plain, complete lines (no
carriage-return frames) in logs, `ray exec`, CI and pipes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

QUIET, NORMAL, VERBOSE = -1, 0, 1
_level = NORMAL


def set_verbosity(level: int) -> None:
    """QUIET (-q: results and errors only), NORMAL, or VERBOSE (-v: more detail, tracebacks)."""
    global _level
    _level = max(QUIET, min(VERBOSE, int(level)))


def verbosity() -> int:
    return _level


def info(message: str) -> None:
    """A line about the work (not its result); dropped under --quiet."""
    if _level > QUIET:
        print(message, flush=True)


class Progress:
    """Counts done units of a known total. On a terminal a tqdm bar; elsewhere one plain line per
    tenth of the work (and at least every `every_s` seconds; none in the first `after_s` seconds, so
    short work prints just the final line), then a final line; nothing when quiet."""

    def __init__(self, total: int, desc: str, unit: str = "it", stream: TextIO | None = None,
                 every_s: float = 30.0, after_s: float = 2.0, enabled: bool = True) -> None:
        self.total, self.desc, self.unit, self.done = max(0, int(total)), desc, unit, 0
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and _level > QUIET and self.total > 0
        self.every_s, self.after_s, self.start = every_s, after_s, time.monotonic()
        self._bar = None
        self._next_tenth, self._last_line = 1, self.start
        if self.enabled and _isatty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, leave=False, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        tenth = self.done * 10 // self.total
        if self.done < self.total and now - self.start >= self.after_s and (
                tenth >= self._next_tenth or now - self._last_line >= self.every_s):
            self._line(now)
            self._next_tenth = tenth + 1

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self.done:
            self._line(time.monotonic())
        self.enabled = False

    def _line(self, now: float) -> None:
        self._last_line = now
        pct = 100 * self.done / self.total
        print(f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.0f}%, {now - self.start:.0f} s)",
              file=self.stream, flush=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], total: int, desc: str, unit: str = "it", enabled: bool = True) -> Iterator[T]:
    """Yield `items`, counting one unit each (see `Progress`)."""
    with Progress(total, desc, unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
