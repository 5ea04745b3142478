"""Ray processes a killed search driver left behind, ended on the next start of that experiment.

A driver that starts its own local Ray cluster records the cluster's session directory in the
experiment folder. When the driver is SIGKILLed, most of the cluster dies with it (Ray's fate
sharing), but its dashboard and runtime-env agents can stay, ignoring SIGTERM. The next `dpda tune`
of the experiment (holding the experiment lock, so the recorded driver is gone) ends the processes
that are provably that session's: same user, same host, the recorded session directory in their
command line; SIGTERM first, SIGKILL for those still there after a grace period.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

# not *.json: Tune's restore copies those into its staging folder and its syncs copy them back,
# which put the previous session's record over the current one
SESSION_FILE = ".dpda-ray-session"


def _session_processes(session_dir: str) -> list[int]:
    """PIDs of this user's processes whose command line names `session_dir` (Linux /proc)."""
    pids = []
    # the dir itself, not a longer name it is a prefix of (session_..._12 vs session_..._123)
    needle = re.compile(re.escape(session_dir.rstrip("/").encode()) + rb"(?=[/\0\s'\",:;=]|$)")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle.search(cmdline):
            pids.append(int(entry.name))
    return pids


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def end_session(session_dir: str, grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL after `grace_s`, the processes of a Ray session; the pids it found."""
    pids = _session_processes(session_dir)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (left := _session_processes(session_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal(left, signal.SIGKILL)
    return pids


def current_session() -> str | None:
    """The session dir of the Ray cluster this driver started itself; None when it joined one, or
    before it started Ray (a driver that has not imported Ray has no cluster: nothing is imported)."""
    if "ray" not in sys.modules:
        return None
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or not getattr(node, "head", False):
        return None
    return node.get_session_dir_path()


def end_previous(exp_dir: Path) -> list[int]:
    """End the leftovers of the session recorded in `exp_dir`, unless it is this driver's own. Call
    it holding the experiment lock, best before Ray starts (then a new driver never joins them)."""
    try:
        previous = json.loads((exp_dir / SESSION_FILE).read_text())
    except (OSError, ValueError):
        return []
    if (isinstance(previous, dict) and previous.get("host") == socket.gethostname()
            and isinstance(previous.get("session_dir"), str) and "/session_" in previous["session_dir"]
            and previous["session_dir"] != current_session()):
        return end_session(previous["session_dir"])
    return []


def record_current(exp_dir: Path) -> None:
    """Record the session of the Ray cluster this driver started (for the next start to end its
    leftovers), or none when it joined a cluster. Call it holding the lock, once Ray is up."""
    record = exp_dir / SESSION_FILE
    current = current_session()
    if current is not None:
        record.write_text(json.dumps({"session_dir": current, "host": socket.gethostname(), "driver_pid": os.getpid()}))
    else:
        record.unlink(missing_ok=True)
