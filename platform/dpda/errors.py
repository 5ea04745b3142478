"""Errors a user can cause and fix (bad audio, manifests, configs, search spaces).

The CLI prints them as one line naming the file, line or key, without a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class UserError(Exception):
    """A problem in the user's input; the message names the file, line or key."""


def read_user_text(path: str | os.PathLike, what: str) -> str:
    """The text of a file the user named (`what` says which kind, e.g. "config file"), or one
    UserError line naming it: missing, a folder, not UTF-8, or unreadable. A leading UTF-8 byte
    order mark (what Windows editors save) is dropped: kept, it became part of the first id."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, not a {what}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); save the {what} as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
