"""The per-user key behind dpda.tune.state_manifest: every file that resume unpickles must match an
HMAC-SHA256 tag made with this key, which is not stored in the experiment folder, so a pickle that
someone swapped in (or a truncated upload) is refused in one line before any byte of it is unpickled.

The key: `$DPDA_CONFIG_DIR/tune.key`, else `$XDG_CONFIG_HOME/dpda/tune.key`, else
`~/.config/dpda/tune.key`; 32 random bytes, created 0600 on first use. On a cluster the driver runs
on the head node, so it is the head node's key that signs and verifies: resume a search from the
node (or a user account with the same key file) that started it. Without the key, an
experiment's signed files cannot be resumed, by design.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from dpda.errors import UserError

KEY_FILE = "tune.key"


def key_path() -> Path:
    if os.environ.get("DPDA_CONFIG_DIR"):
        return Path(os.environ["DPDA_CONFIG_DIR"]) / KEY_FILE
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "dpda" / KEY_FILE


def key() -> bytes:
    """The user's signing key, created (0600, exclusively: two first runs agree) if absent."""
    path = key_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    data = path.read_bytes()
    if len(data) < 32:
        raise UserError(f"{path}: signing key shorter than 32 bytes (delete it to make a new one; "
                        "experiments signed with the old key can then not be resumed)")
    return data
