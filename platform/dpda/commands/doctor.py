"""`dpda doctor`: versions, devices and a verdict on whether this install can run dpda.

Exit 0 on a sound install; exit 1 with one line naming the first problem and the fix otherwise.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options of its own: -q prints only problems."""


def run(args: argparse.Namespace) -> int:
    from dpda.console import QUIET, verbosity
    from dpda.install import diagnose, with_fix

    diagnosis = diagnose()
    quiet = verbosity() == QUIET
    if not quiet:
        width = max(len(name) for name in diagnosis.versions)
        for name, version in diagnosis.versions.items():
            print(f"{name:<{width}}  {version or 'not installed'}")
        print(f"{'devices':<{width}}  {', '.join(diagnosis.devices) or 'unknown (torch did not load)'}")
    for problem in diagnosis.problems[1:]:
        print(f"dpda doctor: also: {problem}", file=sys.stderr)
    if diagnosis.problems:
        print(f"dpda doctor: error: {with_fix(diagnosis.problems[0])}", file=sys.stderr)
        return 1
    if not quiet:
        print("ok: torch and torchaudio load together and every pinned dependency matches")
    return 0
