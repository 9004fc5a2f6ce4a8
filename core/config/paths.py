"""Config fields by dotted path ("optim.lr", "data.seq_len"): read, test and set a field of a config dict.

One walk for every place that names a field by its path: the studio's forms and pre-flight, and a sweep's
parameters (core/sweep/spec.py). `--set key.sub=value` overrides (core/config/load.py) parse strings and check
sections on top of the same idea.
"""
from __future__ import annotations

from typing import Any

_MISSING = object()


def get_path(data: dict, path: tuple[str, ...] | list[str], default: Any = None) -> Any:
    """The value at ``path`` in nested dicts, or ``default`` when a part is missing or not a dict."""
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def has_path(data: dict, path: tuple[str, ...] | list[str]) -> bool:
    """Whether ``path`` names a field of ``data`` (a value of None counts as present)."""
    return get_path(data, path, _MISSING) is not _MISSING


def set_path(data: dict, path: tuple[str, ...] | list[str], value: Any) -> None:
    """Set the field at ``path``, creating the sections on the way."""
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
