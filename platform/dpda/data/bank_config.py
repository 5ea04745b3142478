"""The sizes of `dpda banks`' offline banks, apart from the builder so that `dpda banks --help`
reads the defaults without importing torch (the builder renders speech with it)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from dpda.errors import UserError


@dataclass(frozen=True)
class BankSizes:
    """How much to write; each count >= 0, seconds 0 < min <= max."""

    seed: int = 0
    noise: int = 8
    music: int = 4
    speech: int = 8
    rooms: int = 2  # per room size
    rirs_per_room: int = 3
    min_seconds: float = 2.0
    max_seconds: float = 6.0

    def __post_init__(self) -> None:
        for name in ("noise", "music", "speech", "rooms", "rirs_per_room"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')}: must be >= 0, got {getattr(self, name)}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise UserError(f"--min-seconds/--max-seconds: expected 0 < min <= max, got "
                            f"{self.min_seconds}, {self.max_seconds}")


SIZE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(BankSizes) if f.name != "seed")
