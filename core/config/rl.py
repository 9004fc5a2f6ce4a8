"""Settings of the preference and RL methods (DPO, RM, PPO, GRPO, SPO) and of the reward sources.

They live in `TrainConfig.method_options` (core/config/train.py leaves that dict to the method); each recipe
validates it with its class here (`Recipe.Options`), so `--set method_options.beta=0.2` works and the studio can
draw a form from `GRPOConfig.model_json_schema()`. Defaults follow MiniMind v2/v3 where it has one
(docs/rl.md lists the sources), scaled for small models where noted.
"""
from __future__ import annotations

import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _MethodOptions(_Strict):
    """Top level of `method_options` (validated by core.methods.validate_options, which names each field as
    `method_options.<path>`)."""


# ---- reward sources -------------------------------------------------------------------------------------------

class _Source(_Strict):
    weight: float = Field(1.0, ge=-100, le=100, description="Multiplier of this source in the total reward.")
    name: str | None = Field(None, description="Key in the reward breakdown (default: the type).")

    def key(self) -> str:
        return self.name or self.type  # type: ignore[attr-defined]


class AnswerReward(_Source):
    type: Literal["answer"] = "answer"
    partial: float = Field(0.2, ge=0, le=1, description="Score when the answer appears in the reply but not first.")
    missing: float = Field(0.0, ge=-10, le=10, description="Score for prompts that have no `answer` field.")


class FormatReward(_Source):
    type: Literal["format"] = "format"
    pattern: str = Field(..., description="Python regular expression the reply should match.")
    mode: Literal["search", "fullmatch"] = Field("fullmatch", description="fullmatch: the whole reply; search: anywhere.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class LengthReward(_Source):
    type: Literal["length"] = "length"
    min_chars: int = Field(1, ge=0, le=100000, description="Shortest reply that scores 1.")
    max_chars: int = Field(200, ge=1, le=100000, description="Longest reply that scores 1.")
    tolerance: int = Field(50, ge=1, le=100000, description="Characters outside the range that cost 1 point (score ≥ −1).")

    @model_validator(mode="after")
    def _range(self) -> "LengthReward":
        if self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        return self


class RepetitionReward(_Source):
    type: Literal["repetition"] = "repetition"
    n: int = Field(3, ge=1, le=16, description="n-gram size (in tokens) for the repeated-fraction penalty.")


class RewardModelReward(_Source):
    type: Literal["reward_model"] = "reward_model"
    path: str = Field(..., description="Reward-model checkpoint or run dir from `minimind train rm`.")
    clip: float = Field(3.0, gt=0, le=1000, description="Scores are clipped to ±clip (MiniMind clips the RM to ±3).")


class HFClassifierReward(_Source):
    type: Literal["hf_classifier"] = "hf_classifier"
    path: str = Field(..., description="Local folder of a transformers sequence-classification model (never downloaded).")
    label: int = Field(0, ge=0, description="Logit index used as the score.")
    clip: float = Field(3.0, gt=0, le=1000, description="Scores are clipped to ±clip.")


RewardSourceConfig = Annotated[Union[AnswerReward, FormatReward, LengthReward, RepetitionReward, RewardModelReward,
                                     HFClassifierReward], Field(discriminator="type")]


class RewardConfig(_Strict):
    sources: list[RewardSourceConfig] = Field(
        default_factory=lambda: [AnswerReward(), LengthReward(weight=0.5, min_chars=1, max_chars=64)],
        description="Reward sources; the total is Σ weight·score.")

    @model_validator(mode="after")
    def _unique(self) -> "RewardConfig":
        keys = [s.key() for s in self.sources]
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ValueError(f"reward sources share the name {sorted(dup)[0]!r}; give each a distinct `name`")
        if not self.sources:
            raise ValueError("rewards.sources is empty; add at least one source (e.g. {\"type\": \"answer\"})")
        return self


# ---- preference methods ---------------------------------------------------------------------------------------

class DPOConfig(_MethodOptions):
    beta: float = Field(0.1, gt=0, le=100, description="DPO β: strength of the implicit KL to the reference (MiniMind 0.1).")
    length_normalised: bool = Field(False, description="Mean instead of sum of token log-probs (MiniMind's variant).")
    reference: str | None = Field(None, description="Frozen reference checkpoint (default: `init`).")


class RMConfig(_MethodOptions):
    center_coef: float = Field(0.0, ge=0, le=10, description="Adds coef·mean((s_c+s_r)²) so scores stay near 0 (TRL center_rewards_coefficient).")


# ---- on-policy RL ---------------------------------------------------------------------------------------------

class _Sampling(_MethodOptions):
    """What every on-policy method shares: rollout sampling, the reference, logging, updates per rollout."""
    max_prompt_len: int = Field(128, ge=4, le=32768, description="Prompt tokens kept (the end survives).")
    max_new_tokens: int = Field(64, ge=1, le=32768, description="Longest completion per rollout.")
    temperature: float = Field(0.8, gt=0, le=10, description="Rollout sampling temperature (MiniMind 0.8).")
    top_p: float = Field(1.0, gt=0, le=1, description="Rollout nucleus filter (1 = off: log-probs stay exact).")
    top_k: int = Field(0, ge=0, description="Rollout top-k filter (0 = off).")
    kl_coef: float = Field(0.02, ge=0, le=10, description="Weight of the k3 KL to the reference (MiniMind 0.02).")
    reference: str | None = Field(None, description="Frozen reference checkpoint (default: `init`).")
    sample_every: int = Field(10, ge=0, le=1_000_000, description="Steps between `sample` events (0 = off).")
    samples_logged: int = Field(4, ge=1, le=64, description="Completions per `sample` event.")
    updates_per_rollout: int = Field(1, ge=1, le=16, description="Optimizer steps on each rollout (PPO epochs μ).")
    eval_max_new_tokens: int = Field(32, ge=1, le=32768, description="Greedy evaluation: completion budget.")


class _RLBase(_Sampling):
    rewards: RewardConfig = Field(default_factory=RewardConfig)


class _GroupPolicy(_Strict):
    """GRPO-style groups and policy loss (GRPO and the agent method)."""
    num_generations: int = Field(4, ge=2, le=256, description="Samples per prompt G (MiniMind v2 8, v3 6).")
    loss: Literal["grpo", "dapo", "dr_grpo", "cispo"] = Field(
        "grpo", description="grpo: PPO clip, per-sequence token mean; dapo: clip-higher (ε_high 0.28 unless set), "
        "one token mean over the batch; dr_grpo: no std scaling, token sum over batch×max_new_tokens; cispo: "
        "stop-gradient importance weight min(ρ, cispo_cap) × A × log π, token mean (MiniMind v3's default).")
    clip: float = Field(0.2, gt=0, le=1, description="ε_low of the clipped ratio.")
    clip_high: float | None = Field(None, gt=0, le=10, description="ε_high (clip-higher, DAPO); default = clip "
                                    "(0.28 for loss=dapo).")
    cispo_cap: float = Field(5.0, gt=1, le=100, description="CISPO: upper bound of the importance weight (MiniMind v3 5).")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="What the advantages are divided by, as TRL's scale_rewards: group — each group's std "
        "(DeepSeekMath, MiniMind, TRL's default); batch — the std of the whole batch (Liu et al. 2025); none — no "
        "division (dr_grpo never divides). docs/rl.md#advantages.")
    std_floor: float = Field(0.1, ge=0, le=100, description="Lower bound of that std, in reward units: rewards that "
                             "differ by less than this never get full-size advantages (near-ties stay small).")

    @field_validator("scale_rewards", mode="before")
    @classmethod
    def _scale_bool(cls, v):
        return {True: "group", False: "none"}.get(v, v) if isinstance(v, bool) else v  # configs before 2026-12

    def epsilon_high(self) -> float:
        if self.clip_high is not None:
            return self.clip_high
        return 0.28 if self.loss == "dapo" else self.clip


class PPOConfig(_RLBase):
    clip: float = Field(0.2, gt=0, le=1, description="PPO ε (MiniMind v3 0.2).")
    advantage: Literal["gae", "sequence"] = Field("gae", description="gae: token-level GAE with a per-token critic; "
                                                  "sequence: A = R − V(prompt) for the whole reply (MiniMind v2).")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount γ (MiniMind v3 1.0).")
    lam: float = Field(0.95, ge=0, le=1, description="GAE λ (MiniMind v3 0.95).")
    value_coef: float = Field(0.5, ge=0, le=100, description="Weight of the critic loss (MiniMind 0.5).")
    value_clip: float | None = Field(0.2, gt=0, description="Clipped value loss range (MiniMind v3 0.2; null = off).")
    critic_lr: float | None = Field(None, gt=0, le=1, description="Critic learning rate (default: optim.lr).")
    critic: str | None = Field(None, description="Initial critic (a reward-model checkpoint); default: the policy's backbone.")


class GRPOConfig(_RLBase, _GroupPolicy):
    pass


class AgentConfig(_Sampling, _GroupPolicy):
    """Multi-turn tool-use RL (MiniMind v3 `train_agent.py`, reference §4.3); rewards are the agent's own terms."""
    loss: Literal["grpo", "dapo", "dr_grpo", "cispo"] = Field("cispo", description=_GroupPolicy.model_fields["loss"].description)
    max_prompt_len: int = Field(1024, ge=4, le=32768, description="Longest prompt (tools block included); longer "
                                "prompts are an error, not cut: the tools must stay.")
    max_new_tokens: int = Field(96, ge=1, le=32768, description="Longest generation per turn.")
    max_turns: int = Field(3, ge=1, le=16, description="Generation turns per episode (MiniMind 3).")
    thinking_ratio: float = Field(0.1, ge=0, le=1, description="Share of episodes with thinking open (MiniMind 0.1).")
    constrain_tools: bool = Field(False, description="Decode each turn under the offered tools' schemas (text, or "
                                  "calls to those tools with valid arguments). The log-probs stay the policy's own, "
                                  "unconstrained ones (docs/rl.md, Constrained rollouts).")
    eval_max_new_tokens: int = Field(96, ge=1, le=32768, description="Greedy evaluation: tokens per turn.")
    kl_coef: float = Field(0.1, ge=0, le=10, description="Weight of the k3 KL to the reference (MiniMind's agent "
                           "trainer 0.1).")
    std_floor: float = Field(0.25, ge=0, le=100, description="Lower bound of the advantage std in reward units "
                             "(a tenth of the answer term's 2.5).")


class SPOConfig(_RLBase):
    r_min: float = Field(-3.0, description="Lowest reward, for r̃ = (r − r_min)/(r_max − r_min) (MiniMind: −3).")
    r_max: float = Field(3.0, description="Highest reward (MiniMind: 3).")
    adv_clip: float = Field(5.0, gt=0, le=1000, description="Advantages are clamped to ±adv_clip (MiniMind 5).")
    d_half: float = Field(0.06, gt=0, le=100, description="Δ mean log-prob that halves the tracker's memory ρ.")
    rho_min: float = Field(0.5, ge=0, le=1, description="Lowest ρ.")
    rho_max: float = Field(0.96, ge=0, le=1, description="Highest ρ.")

    @model_validator(mode="after")
    def _range(self) -> "SPOConfig":
        if self.r_max <= self.r_min:
            raise ValueError(f"r_max ({self.r_max}) must exceed r_min ({self.r_min})")
        return self
