"""One writer per experiment: `dpda tune` holds an exclusive lock on EXPERIMENT/.dpda-tune.lock for
as long as it runs, so a second `dpda tune --resume` of the same experiment fails in one line
instead of interleaving its trials, study writes and state files with the first one's.

The lock is flock(2) (through `filelock`): the kernel drops it when its holder dies, SIGKILL
included, so a killed search never leaves a stale lock. Shared storage: NFS v4 and Amazon EFS
support flock across nodes, so drivers on different nodes exclude each other; object stores
(s3://, gs://) have no locks at all: there dpda takes no lock and says so, and running one driver
per experiment is up to you.
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from dpda.errors import UserError

LOCK_FILE = ".dpda-tune.lock"


def lock_experiment(exp_dir: Path) -> FileLock:
    """The held lock of `exp_dir` (created if needed); one line if another process holds it."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(exp_dir / LOCK_FILE), timeout=0, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"{exp_dir}: another `dpda tune` is running this experiment (it holds "
                        f"{LOCK_FILE}); wait for it to end or stop it first") from None
    return lock
