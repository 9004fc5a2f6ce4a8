"""Settings of white-box knowledge distillation (`minimind train distill`; core/train/recipes/distill.py)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: str = Field(..., description="Teacher checkpoint or run dir (any preset; frozen, same tokenizer).")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the cross-entropy on the data; 1 − alpha weighs "
                         "the KL to the teacher (MiniMind 0.5).")
    temperature: float = Field(1.5, gt=0, le=100, description="Softmax temperature T of both distributions; the KL "
                               "is multiplied by T² (Hinton et al. 2015; MiniMind 1.5).")
