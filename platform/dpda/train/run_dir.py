"""Owning a run directory: one writer at a time, one identity across restarts, files that parse.

Why: two `dpda train` processes on one run dir would overwrite each other's checkpoints and
interleave telemetry; a run that crashed before its first checkpoint must rerun under the same
run id, so its telemetry rows are superseded instead of counted twice; and summary files must be
valid JSON (NaN is not), so any tool can read them.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

from dpda.errors import UserError

LOCK_NAME = ".dpda.lock"
RUN_ID_NAME = "run_id"


class RunDirLock:
    """An exclusive advisory lock on RUN_DIR/.dpda.lock, released when the process exits (also
    on kill -9), so a crashed run never blocks its own rerun."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, wait_s: float = 5.0) -> RunDirLock:
        """Take the lock, waiting up to `wait_s` (a restarted worker may start while the process
        it replaces is still exiting); then fail with one line naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UserError(f"{self.path.parent}: another dpda run is writing here (pid {holder}); "
                                "wait for it to finish or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def persistent_run_id(run_dir: str | os.PathLike, create: bool = True) -> str | None:
    """The run's id, fixed by the first start (RUN_DIR/run_id) before any telemetry row exists."""
    path = Path(run_dir) / RUN_ID_NAME
    if path.exists():
        return path.read_text(encoding="utf-8").strip() or None
    if not create:
        return None
    run_id = uuid.uuid4().hex[:12]
    write_text_atomic(path, run_id + "\n")
    return run_id


def json_safe(value: Any) -> Any:
    """NaN and infinities -> None (JSON null), recursively; JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Valid JSON (non-finite numbers as null), written atomically."""
    write_text_atomic(Path(path), json.dumps(json_safe(value), indent=2, allow_nan=False, default=str))


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
