"""LoRA's `method_options` (`method: lora`): adapter rank, scale, dropout and the layers it adapts.

Plain pydantic, like the other methods' option models (core/config/rl.py, distill.py); core/model/lora.py
applies it. Configs saved before LoRA's settings moved here carry them as a top-level `lora` block, which
`TrainConfig` moves into `method_options`."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    rank: int = Field(8, ge=1, le=1024, description="Adapter rank r.")
    alpha: float = Field(16.0, gt=0, le=4096, description="Scale: the update is (alpha/r)·B@A.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS),
                                      description="nn.Linear modules to adapt, matched by name (last path component).")

    def trainable_params(self, model: dict) -> int:
        """Adapter parameters for a model config dict (the memory estimate's trainable count): r·(in+out) per
        adapted layer, the attention projections (4, taken as h→h) and the MLP's three (h↔inner)."""
        h = model["hidden_size"]
        inner = model.get("intermediate_size") or int(8 * h / 3)
        return model["num_hidden_layers"] * self.rank * (4 * 2 * h + 3 * (h + inner))
