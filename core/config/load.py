"""The edge where a training config comes in: a JSON file, `--set key.sub=value` overrides, validation with
errors a person can act on (`source: field: message`). Inside, code trusts the `TrainConfig` it returns."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.config.errors import TrainConfigError, format_validation_error
from core.config.train import TrainConfig


def _parse_value(text: str) -> Any:
    """`--set` values are JSON when they parse (numbers, true, lists), else plain strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` strings to a config dict (in place, returned)."""
    for item in overrides or []:
        if "=" not in item:
            raise TrainConfigError(f"--set {item!r}: expected key=value, e.g. optim.lr=3e-4")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None or isinstance(child, str):  # e.g. model given as a preset name
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise TrainConfigError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return data


def validate_train_config(data: dict, source: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(format_validation_error(exc, source)) from None


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      base: dict | None = None) -> TrainConfig:
    """Read a JSON config (or start from `base`), apply `--set` overrides, validate."""
    data: dict = dict(base or {})
    source = "config"
    if path is not None:
        source = str(path)
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise TrainConfigError(f"{path}: (top level): a config must be a JSON object of fields, "
                                       f"not {type(loaded).__name__}; see docs/training.md")
            data.update(loaded)
        except FileNotFoundError:
            raise TrainConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as exc:
            raise TrainConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    apply_overrides(data, overrides or [])
    return validate_train_config(data, source)
