"""Where the real-audio set looks for its Debian packages' files and programs.

Why one place: the set's tests must pass (or skip, naming what to install) both with and without
the optional Debian packages, and CI installs them, which would hide a test that only passes with
them. `PACKAGE_ROOT_ENV` points every lookup (recordings, texts, Festival voices, programs) at
another filesystem root, e.g. an empty folder, so `.ci/run` also runs the tests as a machine
without the packages sees them, and a folder of `dpkg -x`-extracted packages stands in for an
installed system. Unset (the default) means `/` and programs found on PATH.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PACKAGE_ROOT_ENV = "DPDA_REALSET_PACKAGE_ROOT"


def package_root() -> Path:
    """The root below which the Debian packages' files are looked for (default /)."""
    return Path(os.environ.get(PACKAGE_ROOT_ENV) or "/")


def shared(*parts: str) -> Path:
    """A path below the package root's usr/share (where the packages install their data)."""
    return package_root().joinpath("usr", "share", *parts)


def program(name: str) -> str | None:
    """The executable `name`: on PATH by default, else only in the package root's usr/bin and bin."""
    override = os.environ.get(PACKAGE_ROOT_ENV)
    if not override:
        return shutil.which(name)
    return shutil.which(name, path=os.pathsep.join(str(Path(override, d)) for d in ("usr/bin", "bin")))
