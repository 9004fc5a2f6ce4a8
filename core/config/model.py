"""Model configuration: one pydantic model for every MiniMind variant, plus the named presets.

Field names follow MiniMind / HF Llama so configs and checkpoints map one to one. Validated once at the edge;
the model code trusts it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


class YarnConfig(BaseModel):
    """YaRN RoPE scaling (Peng et al. 2023, "YaRN: Efficient Context Window Extension", eq. 17-20).

    Defaults are MiniMind v2's: factor 16 over 2048 original positions (32K context), attention factor 1.0
    (MiniMind does not apply the paper's 0.1*ln(s)+1 temperature; set it here to use it).
    """

    model_config = ConfigDict(extra="forbid")
    type: Literal["yarn"] = "yarn"
    factor: float = Field(16.0, ge=1.0, le=64.0, description="Context extension factor s")
    original_max_position_embeddings: int = Field(2048, ge=16, le=1_048_576, description="Trained context length")
    beta_fast: float = Field(32.0, gt=0, le=1024, description="Rotations above which dimensions are not interpolated")
    beta_slow: float = Field(1.0, gt=0, le=1024, description="Rotations below which dimensions are fully interpolated")
    attention_factor: float = Field(1.0, gt=0, le=10, description="Multiplier on cos/sin (attention temperature)")


class ModelConfig(BaseModel):
    """Architecture of a MiniMind decoder (dense or Mixture-of-Experts)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    vocab_size: int = Field(6400, ge=8, le=262_144, description="Tokenizer vocabulary size")
    hidden_size: int = Field(512, ge=8, le=16384, description="Model width")
    num_hidden_layers: int = Field(8, ge=1, le=256, description="Decoder blocks")
    num_attention_heads: int = Field(8, ge=1, le=256, description="Query heads")
    num_key_value_heads: int = Field(2, ge=1, le=256, description="Key/value heads (GQA); divides query heads")
    head_dim: Optional[int] = Field(None, ge=4, le=1024, description="Per-head size; default hidden/heads")
    intermediate_size: Optional[int] = Field(
        None, ge=8, le=131072, description="SwiGLU width; default 64*ceil(int(8*hidden/3)/64)")
    max_position_embeddings: int = Field(32768, ge=16, le=1_048_576, description="Longest supported context")
    rms_norm_eps: float = Field(1e-5, gt=0, le=1e-2, description="RMSNorm epsilon")
    rope_theta: float = Field(1e6, gt=0, description="RoPE base frequency")
    rope_scaling: Optional[YarnConfig] = Field(None, description="YaRN settings, used when inference_rope_scaling is on")
    inference_rope_scaling: bool = Field(False, description="Apply YaRN to reach max_position_embeddings")
    qk_norm: bool = Field(False, description="Per-head RMSNorm on queries and keys (Qwen3 style)")
    tie_word_embeddings: bool = Field(True, description="Share the input embedding with the output head")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Embedding, attention and residual dropout")
    flash_attn: bool = Field(True, description="Use fused scaled_dot_product_attention when possible")
    # Mixture of Experts
    use_moe: bool = Field(False, description="Replace the FFN with routed experts")
    n_routed_experts: int = Field(4, ge=1, le=256, description="Routed experts per layer")
    num_experts_per_tok: int = Field(2, ge=1, le=64, description="Experts chosen per token (top-k)")
    n_shared_experts: int = Field(1, ge=0, le=16, description="Always-on, un-gated experts")
    moe_intermediate_size: Optional[int] = Field(None, ge=8, le=131072, description="Expert FFN width; default intermediate_size")
    norm_topk_prob: bool = Field(True, description="Renormalise the top-k routing weights to sum to 1")
    renormalise_top1: bool = Field(
        False, description="With norm_topk_prob, renormalise a single chosen expert too (weight 1: minimind-3, "
                           "Qwen3-MoE); MiniMind2 renormalises only when top-k > 1")
    aux_loss_alpha: float = Field(0.01, ge=0.0, le=10.0, description="Load-balancing loss weight")
    seq_aux: bool = Field(True, description="Balance per sequence (MiniMind) instead of per batch")
    # Special tokens
    pad_token_id: int = Field(0, ge=0)
    bos_token_id: int = Field(1, ge=0)
    eos_token_id: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _check_shapes(self) -> "ModelConfig":
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}), or set head_dim")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})")
        if self.use_moe and self.num_experts_per_tok > self.n_routed_experts:
            raise ValueError(
                f"num_experts_per_tok ({self.num_experts_per_tok}) cannot exceed n_routed_experts "
                f"({self.n_routed_experts})")
        if self.resolved_head_dim % 2:
            raise ValueError(f"head_dim ({self.resolved_head_dim}) must be even for RoPE")
        return self

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def resolved_intermediate_size(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        return 64 * math.ceil(int(self.hidden_size * 8 / 3) / 64)

    @property
    def resolved_moe_intermediate_size(self) -> int:
        return self.moe_intermediate_size or self.resolved_intermediate_size

    @property
    def renormalises_topk(self) -> bool:
        """Whether the router rescales its top-k weights to sum to 1 (the model, GGUF and HF exports read this)."""
        return self.norm_topk_prob and (self.num_experts_per_tok > 1 or self.renormalise_top1)

    @property
    def resolved_rope_scaling(self) -> YarnConfig:
        return self.rope_scaling or YarnConfig()

    # JSON helpers
    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


_MINIMIND3 = dict(hidden_size=768, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4, head_dim=96,
                  intermediate_size=2432, qk_norm=True, rms_norm_eps=1e-6, vocab_size=6400)

PRESETS: dict[str, dict] = {
    # A CPU demo size: ~1.6M parameters with a 6400 vocab, ~60 optimizer steps/min of batch 16 x 128 tokens on
    # 2 cores, enough for the loss to fall visibly within a minute.
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                 max_position_embeddings=2048),
    # MiniMind2-Small: 25,829,888 parameters
    "small": dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2),
    # MiniMind2-MoE: 145,029,760 parameters (4 routed experts, top-2, 1 shared expert)
    "moe": dict(hidden_size=640, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
                use_moe=True, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1),
    # MiniMind2 (base): 104,030,976 parameters
    "base": dict(hidden_size=768, num_hidden_layers=16, num_attention_heads=8, num_key_value_heads=2),
    # minimind-3 (upstream's MiniMindConfig defaults, Qwen3-aligned): QK-norm, GQA 8:4, FFN ceil(768*pi/64)*64,
    # eps 1e-6, the v3 tokenizer's 6400 tokens. 63,912,192 parameters
    "minimind3": _MINIMIND3,
    # minimind-3-moe: 4 experts of the same width, top-1 renormalised to weight 1, no shared expert, upstream's
    # batch-level balance loss (coefficient 5e-4). 198,416,640 parameters, 63,936,768 active per token
    "minimind3-moe": dict(_MINIMIND3, use_moe=True, n_routed_experts=4, num_experts_per_tok=1, n_shared_experts=0,
                          renormalise_top1=True, aux_loss_alpha=5e-4, seq_aux=False),
}

PRESET_DESCRIPTIONS = {
    "tiny": "CPU demo (~1.6M params): trains visibly in about a minute on 2 cores",
    "small": "MiniMind2-Small, 26M params",
    "moe": "MiniMind2-MoE, 145M params (4 experts, top-2, +1 shared)",
    "base": "MiniMind2, 104M params",
    "minimind3": "minimind-3, 64M params (QK-norm, Qwen3-style; use the v3 tokenizer)",
    "minimind3-moe": "minimind-3-moe, 198M params, 64M active (4 experts, top-1; v3 tokenizer)",
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """Return the named preset, with optional field overrides (e.g. vocab_size from a trained tokenizer)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})
