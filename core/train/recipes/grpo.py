"""GRPO (Shao et al. 2024, DeepSeekMath §4) and its loss variants: G samples per prompt, group-normalised
advantages, a policy loss against the sampling policy's log-probs, k3 KL to the frozen reference.

`method_options.loss` picks the policy loss and its normalisation (core/rl/losses.py):
grpo — PPO-clip, per-sequence token mean, then mean over sequences (DeepSeekMath eq. 3);
dapo — clip-higher (ε_high 0.28) and one token mean over the batch (Yu et al. 2025);
dr_grpo — advantages without the std division, token sum over batch × max_new_tokens (Liu et al. 2025);
cispo — stop-gradient importance weight min(ρ, cap) × A × log π, token mean (MiniMax-M1; MiniMind v3's default).
Settings: core/config/rl.py GRPOConfig; docs/rl.md.
"""
from __future__ import annotations

import torch

from core.rl.losses import (aggregate_policy_loss, cispo_policy_loss, clipped_policy_loss, group_advantages, k3_kl,
                            masked_mean)
from core.rl.rollout import old_logprobs, response_logprobs
from core.train.recipes.onpolicy import OnPolicyMethod, on_policy


def policy_loss_terms(o, logp, old_logp, advantages):
    """(per-token policy loss, ratio, clipped) for the variant `o.loss` of GRPO-style options `o`."""
    if o.loss == "cispo":
        return cispo_policy_loss(logp, old_logp, advantages, o.cispo_cap)
    return clipped_policy_loss(logp, old_logp, advantages, o.clip, o.epsilon_high())


def grouped_advantages(recipe, r) -> None:
    """Each sample's reward against its prompt's group (Dr. GRPO: without dividing by the group's std)."""
    o = recipe.options
    scale = "none" if o.loss == "dr_grpo" else o.scale_rewards
    r.advantages = group_advantages(r.rewards, recipe.samples_per_prompt, scale=scale, std_floor=o.std_floor)[:, None]


def group_metrics(r, group_size: int) -> dict:
    """What a person needs to judge a group method (the Curves pane's RL group): the share of groups whose
    advantages are not all zero (groups that all score alike teach nothing) and the mean |A|."""
    a = r.advantages.float().view(-1, group_size)
    return {"advantages/groups_with_signal": (a.abs() > 1e-6).any(dim=1).float().mean(),
            "advantages/abs_mean": a.abs().mean()}


def grpo_loss(recipe, model, r):
    o = recipe.options
    logp, entropy = response_logprobs(model, r, with_entropy=True)
    pg, ratio, clipped = policy_loss_terms(o, logp, old_logprobs(r, logp), r.advantages)
    kl = k3_kl(logp, r.ref_logp)
    loss = aggregate_policy_loss(pg + o.kl_coef * kl, r.response_mask, o.loss, o.max_new_tokens)
    with torch.no_grad():
        metrics = {"policy_loss": aggregate_policy_loss(pg, r.response_mask, o.loss, o.max_new_tokens),
                   "kl": masked_mean(kl, r.response_mask), "entropy": entropy,
                   "clip_ratio": masked_mean(clipped, r.response_mask),
                   "ratio/mean": masked_mean(ratio, r.response_mask), **group_metrics(r, recipe.samples_per_prompt)}
    return loss, metrics


GRPO = OnPolicyMethod(advantages=grouped_advantages, loss=grpo_loss,
                      samples_per_prompt=lambda options: options.num_generations)
RECIPE = on_policy(GRPO)
