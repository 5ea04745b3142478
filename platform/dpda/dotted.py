"""Dotted keys (`optim.lr`) into nested mappings: how configs, search spaces and `--set` name a
config value. Its own module because the config, the search space and the tuner all use it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_dotted(tree: Mapping[str, Any], key: str) -> Any:
    """Value at a dotted key; KeyError if any part is missing."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def has_dotted(tree: Mapping[str, Any], key: str) -> bool:
    try:
        get_dotted(tree, key)
    except KeyError:
        return False
    return True


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key, creating intermediate mappings (the config validator rejects typos)."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
