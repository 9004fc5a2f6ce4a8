"""Sampling settings and the logits pipeline shared by every backend.

One `SamplingParams` travels from the CLI, the server and the studio to a backend. The logits pipeline works
on a `(B, V)` batch so single-sequence decoding, batched rollouts and the llama.cpp backend (whose logits we
sample ourselves) choose tokens the same way: repetition penalty, temperature, top-k, top-p, then a draw.
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

EOS_ID = 2  # <|im_end|> (docs/architecture.md, tokenizer API)
MAX_NEW_TOKENS_LIMIT = 1_048_576  # ModelConfig's largest position table; the context clamps it further


class SamplingParams(BaseModel):
    """How to pick the next token and when to stop.

    temperature 0 means greedy (argmax after the repetition penalty). top_k 0 and top_p 1 switch those
    filters off. stop_token_ids None means "the tokenizer's eos" (<|im_end|>); [] means never stop on a token.
    """
    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(256, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    temperature: float = Field(0.85, ge=0.0, le=100.0)
    top_k: int = Field(50, ge=0)  # MiniMind (HF default) keeps 50
    top_p: float = Field(0.85, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.0, ge=0.01, le=100.0)
    stop: list[str] = Field(default_factory=list)
    stop_token_ids: list[int] | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(s == "" for s in value):
            raise ValueError("stop strings must be non-empty (an empty stop would end generation at once)")
        return value

    def resolved_stop_ids(self, eos_id: int = EOS_ID) -> set[int]:
        return {eos_id} if self.stop_token_ids is None else set(self.stop_token_ids)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @classmethod
    def greedy_params(cls, max_new_tokens: int = 64, **kw) -> "SamplingParams":
        return cls(max_new_tokens=max_new_tokens, temperature=0.0, top_p=1.0, **kw)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A private RNG so a seeded call is reproducible whatever else uses torch's global RNG."""
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL (Keskar et al. 2019, eq. 2) as HF/MiniMind apply it: for every id already seen (prompt included),
    divide a positive logit by `penalty` and multiply a negative one. `seen` is a bool mask like `logits`."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2019): keep the smallest set of ids whose probability mass reaches p;
    the most likely id always survives."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative - sorted_logits.softmax(dim=-1) >= p  # mass before this id already reached p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose_tokens(logits: torch.Tensor, params: SamplingParams, seen: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token per row of `logits` (B, V) -> (B,) long. Works in float32 whatever the model's dtype."""
    logits = logits.float()
    if seen is not None:
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    if params.greedy:
        return logits.argmax(dim=-1)
    # Below ~1e-4 the scaled logits overflow float32 (inf - inf = NaN in softmax); the distribution is one-hot
    # by then anyway, so clamping keeps tiny temperatures meaningful instead of crashing.
    logits = filter_top_k(logits / max(params.temperature, 1e-4), params.top_k)
    logits = filter_top_p(logits, params.top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
