"""Configs: pydantic models validated at the edge; their JSON schema drives the studio's forms.

`model.py` (architecture, presets) and the methods' option models (`rl.py`, `distill.py`, `lora.py`) sit below the
method registry (core/methods.py); `train.py` (the training config's schema) sits above it, since the schema asks
the registry for methods and their defaults, and `load.py` (files, `--set` overrides, readable errors) above that.
This package imports only the model config, so importing an option model never pulls the training schema in.
"""
from core.config.model import PRESET_DESCRIPTIONS, PRESETS, ModelConfig, YarnConfig, get_preset

__all__ = ["ModelConfig", "YarnConfig", "PRESETS", "PRESET_DESCRIPTIONS", "get_preset"]
