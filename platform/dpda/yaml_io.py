"""The one YAML reader for configs, search spaces and `--set KEY=VALUE` values.

Why: PyYAML follows YAML 1.1, where `1e-6` (no dot) and `1.0e6` (no exponent sign) are strings,
yet that is how every learning rate in this field is written. This loader is PyYAML's safe loader
(no object tags ever execute) plus the YAML 1.2 float forms, and it turns unreadable files and bad
YAML into one line naming the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dpda.errors import UserError, read_user_text


class Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats: `1e-6`, `5E3`, `1.0e6`, `.5e-3`."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str, source: str, lines: bool = True) -> Any:
    """Parse YAML text; `source` (a path, `--set ...`) names it in the one-line error, followed by
    the line number when `lines` (a file)."""
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None and lines else ""
        raise UserError(f"{source}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """Read and parse a YAML file; a missing file, a folder or non-UTF-8 bytes are one line."""
    return load_yaml(read_user_text(path, what), str(path))


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items -> {dotted key: YAML value}, in order; the last of a key wins."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE")
        out[key.strip()] = load_yaml(value, f"--set {item!r}", lines=False)
    return out
