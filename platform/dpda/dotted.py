"""Dotted keys (`optim.lr`) into nested mappings: how configs, search spaces and `--set` name a
config value. Its own module because the config, the search space and the tuner all use it.

Two forms reach into lists (the `augment.pipeline` tree is lists of steps):
- an index, `KEY[i]` (as error messages write it): `augment.pipeline.steps[0].noise.p`,
  `augment.pipeline.steps[1].noise.categories.speech.snr[0]`;
- a step's name: a mapping with a `steps` list finds, among its steps at any depth, the one-key
  step whose body has `name: NAME`, and the key goes on in that body:
  `augment.pipeline.musan.p` for `steps: [..., {noise: {name: musan, p: 0.5}}]`. Robust to steps
  added or moved, so search spaces and `--set` should prefer names (unique per pipeline).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from dpda.errors import UserError

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
KEY_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*(?:\.[A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])*)*"
"""What a dotted key may look like (identifiers, each optionally indexed)."""

_MISSING = object()


def _parts(key: str) -> list[str | int]:
    out: list[str | int] = []
    for text in key.split("."):
        m = _PART.fullmatch(text)
        if not m:  # not a key this module can address: taken literally (the validator names it)
            out.append(text)
            continue
        out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


def named_steps(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, body) of every named step under a mapping's `steps` list, depth first."""
    steps = node.get("steps") if isinstance(node, Mapping) else None
    if not isinstance(steps, list):
        return
    for step in steps:
        if isinstance(step, Mapping) and len(step) == 1:
            body = next(iter(step.values()))
            if isinstance(body, Mapping):
                if isinstance(body.get("name"), str):
                    yield body["name"], body
                yield from named_steps(body)


def _child(node: Any, part: str | int) -> Any:
    if isinstance(part, int):
        return node[part] if isinstance(node, list) and 0 <= part < len(node) else _MISSING
    if not isinstance(node, Mapping):
        return _MISSING
    if part in node:
        return node[part]
    for name, body in named_steps(node):
        if name == part:
            return body
    return _MISSING


def get_dotted(tree: Mapping[str, Any], key: str) -> Any:
    """Value at a dotted key; KeyError if any part is missing."""
    node: Any = tree
    for part in _parts(key):
        node = _child(node, part)
        if node is _MISSING:
            raise KeyError(key)
    return node


def has_dotted(tree: Mapping[str, Any], key: str) -> bool:
    try:
        get_dotted(tree, key)
    except KeyError:
        return False
    return True


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key, creating intermediate mappings (the config validator rejects typos).
    An index or a step name must exist (a UserError naming the key otherwise: nothing to create
    it from)."""
    parts = _parts(key)
    node: Any = tree
    for part, after in zip(parts[:-1], parts[1:]):
        child = _child(node, part)
        if child is _MISSING or not isinstance(child, (dict, list)):
            if isinstance(part, int) or not isinstance(node, dict):
                raise _unreachable(key)
            child = [] if isinstance(after, int) else {}
            node[part] = child
        node = child
    last = parts[-1]
    if isinstance(last, int):
        if not (isinstance(node, list) and 0 <= last < len(node)):
            raise _unreachable(key)
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise _unreachable(key)


def _unreachable(key: str) -> UserError:
    return UserError(f"{key}: no such key to set (an index past a list's end, or a step name no step has)")
