"""Pure loss and advantage functions for preference and RL training (no models, no I/O).

Every formula names its source; docs/rl.md explains them together. Shapes: B sequences, T tokens; `mask` is 1.0
on tokens that count (response tokens up to and including the first EOS) and 0.0 elsewhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


# ---- log-probabilities --------------------------------------------------------------------------------------

def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] per position, in float32: (B, T, V), (B, T) -> (B, T).

    logsumexp-minus-gather avoids materialising a second (B, T, V) tensor of log-probabilities.
    """
    logits = logits.float()
    picked = logits.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the next-token distribution per position (nats): (B, T, V) -> (B, T)."""
    logits = logits.float()
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Sum (or mean) of log p(label) over the labelled positions of each row, with the causal shift.

    `labels` is -100 where there is no target (prompt, padding), as for SFT. `average=True` is MiniMind's
    length-normalised DPO variant (`Σ logp·mask / Σ mask`, minimind trainer/train_dpo.py, issue #298);
    `average=False` is the DPO paper's sequence log-likelihood (Rafailov et al. 2023, eq. 7).
    """
    targets, mask = labels[:, 1:], (labels[:, 1:] != -100).float()
    lp = token_logprobs(logits[:, :-1], targets) * mask
    total = lp.sum(-1)
    return total / mask.sum(-1).clamp(min=1.0) if average else total


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean)/std over the masked entries (PPO advantage whitening, as in TRL and MiniMind v3)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


# ---- preference losses --------------------------------------------------------------------------------------

def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al. 2023, eq. 7): −log σ(β·[(π_c − π_r) − (ref_c − ref_r)]), mean over pairs.

    Returns (loss, chosen_rewards, rejected_rewards) with the implicit rewards β·(π − ref) per pair (TRL's
    `rewards/chosen`, `rewards/rejected`).
    """
    logits = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    loss = -F.logsigmoid(beta * logits).mean()
    return loss, beta * (policy_chosen - ref_chosen).detach(), beta * (policy_rejected - ref_rejected).detach()


def bradley_terry_loss(score_chosen: torch.Tensor, score_rejected: torch.Tensor) -> torch.Tensor:
    """Reward-model loss: −log σ(s_c − s_r) (Bradley–Terry; Ouyang et al. 2022, eq. 1), mean over pairs."""
    return -F.logsigmoid(score_chosen.float() - score_rejected.float()).mean()


# ---- policy-gradient pieces ---------------------------------------------------------------------------------

ADVANTAGE_SCALES = ("group", "batch", "none")


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4, scale: str | bool = "group",
                     clip: float = 10.0, std_floor: float = 0.0) -> torch.Tensor:
    """GRPO advantages (Shao et al. 2024, DeepSeekMath §4.1.2): A_i = (r_i − mean_g)/σ within each group of
    `group_size` consecutive samples of one prompt, clamped to ±clip as MiniMind does. A group whose rewards are
    all equal gets advantage 0: it carries no signal.

    σ, as TRL's `scale_rewards`: "group" — the group's population std (DeepSeekMath, MiniMind v3); "batch" — the
    std of every reward in the batch, so a group whose rewards differ by a hair is not blown up to the size of
    right against wrong (Liu et al. 2025, "Tricks or Traps? A Deep Dive into RL for LLM Reasoning", §4.1); "none" —
    only the mean baseline (Dr. GRPO, Liu et al. 2025). `std_floor` bounds σ from below (in reward units): groups
    whose rewards are near-ties get advantages of at most (spread / std_floor). True/False mean "group"/"none".
    """
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    if isinstance(scale, bool):
        scale = "group" if scale else "none"
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"advantage scale {scale!r} is not one of {', '.join(ADVANTAGE_SCALES)}")
    g = rewards.float().view(-1, group_size)
    adv = g - g.mean(dim=1, keepdim=True)
    if scale != "none":
        std = g.std(dim=1, unbiased=False, keepdim=True) if scale == "group" else g.std(unbiased=False)
        adv = adv / (std.clamp(min=std_floor) + eps)
    return adv.clamp(-clip, clip).view(-1)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π‖ref) estimator k3 = exp(ref − π) − (ref − π) − 1 ≥ 0 (Schulman 2020, "Approximating KL
    divergence"; used by GRPO, DeepSeekMath eq. 4). Unbiased for samples drawn from π."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                        clip_low: float = 0.2, clip_high: float | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO-clip per token (Schulman et al. 2017, eq. 7): −min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A), ρ = π/π_old.

    `advantages` broadcasts against logp ((B, 1) for sequence-level, (B, T) for token-level). Returns
    (per-token loss, ratio, clipped) where `clipped` marks tokens whose clipped term was the active minimum
    (TRL's `clip_ratio`). ε_high > ε_low is DAPO's clip-higher (Yu et al. 2025).
    """
    clip_high = clip_low if clip_high is None else clip_high
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped_term = ratio.clamp(1.0 - clip_low, 1.0 + clip_high) * advantages
    loss = -torch.min(unclipped, clipped_term)
    clipped = (clipped_term < unclipped).float()
    return loss, ratio, clipped


def cispo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, cap: float = 5.0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CISPO per token (MiniMax-M1, Chen et al. 2025, eq. 4; MiniMind v3's default): −sg(min(ρ, cap))·A·log π.

    The importance weight is clipped from above and its gradient stopped, so every token keeps a gradient
    A·min(ρ, cap)·∇log π — unlike PPO-clip, which zeroes the gradient of clipped tokens. `cap` is the absolute
    upper bound of the weight (1 + ε_high^IS; MiniMind v3 uses 5). Returns (per-token loss, ratio, clipped).
    """
    ratio = torch.exp(logp - old_logp)
    weight = ratio.clamp(max=cap).detach()
    return -(weight * advantages * logp), ratio, (ratio > cap).float()


POLICY_LOSSES = ("grpo", "dapo", "dr_grpo", "cispo")


def aggregate_policy_loss(per_token: torch.Tensor, mask: torch.Tensor, variant: str, max_len: int) -> torch.Tensor:
    """Reduce a per-token loss (B, T) to the batch loss the way each variant normalises it:
    grpo: mean over sequences of each sequence's token mean (DeepSeekMath eq. 3);
    dapo, cispo: one token mean over the whole batch, so long replies are not down-weighted (DAPO eq. 8,
    MiniMax-M1 eq. 4); dr_grpo: the token sum over B·max_len, a constant (Liu et al. 2025, "Understanding R1-Zero-
    Like Training", §3.2), so neither length nor batch composition rescales a token's gradient."""
    if variant == "grpo":
        return masked_mean(per_token, mask, dim=1).mean()
    if variant in ("dapo", "cispo"):
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if variant == "dr_grpo":
        return (per_token * mask).sum() / (mask.shape[0] * max_len)
    raise ValueError(f"method_options.loss: {variant!r} is not one of {', '.join(POLICY_LOSSES)}")


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (Schulman et al. 2016, eq. 16).

    δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}, with V = 0 after the last masked token. Rows are
    right-aligned responses (mask 1…1 0…0). Returns (advantages, returns = A + V), zero outside the mask.
    """
    values = values.float() * mask
    rewards = rewards.float() * mask
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_v = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def value_loss(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               old_values: torch.Tensor | None = None, clip: float | None = None) -> torch.Tensor:
    """½·(V − R)² over masked tokens; with `clip`, PPO's clipped value loss (max of clipped/unclipped errors,
    as in OpenAI baselines ppo2 and MiniMind v3 `cliprange_value`)."""
    err = (values.float() - returns) ** 2
    if clip is not None and old_values is not None:
        v_clip = old_values + (values.float() - old_values).clamp(-clip, clip)
        err = torch.max(err, (v_clip - returns) ** 2)
    return 0.5 * masked_mean(err, mask)
