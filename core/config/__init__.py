"""Configs: pydantic models validated at the edge; their JSON schema drives the studio's forms."""
from core.config.model import PRESET_DESCRIPTIONS, PRESETS, ModelConfig, YarnConfig, get_preset

__all__ = ["ModelConfig", "YarnConfig", "PRESETS", "PRESET_DESCRIPTIONS", "get_preset"]
from core.config.train import DataConfig, LoraConfig, OptimConfig, TrainConfig  # noqa: E402  (trainer configs)
