"""PPO (Schulman et al. 2017) with a value-head critic, a frozen reference and the clipped ratio.

Advantages (PPOConfig.advantage): "gae" (default) — token-level GAE (Schulman et al. 2016) with γ=1, λ=0.95,
the scalar reward on the last response token and the critic's value at every response position, whitened
over the batch (MiniMind v3, TRL); "sequence" — A = R − V(prompt), one number for the whole reply (MiniMind v2
used V at the end of the reply, which has already seen the reply; the prompt-state value is a true baseline).
The KL to the reference is a k3 penalty in the loss (as GRPO and MiniMind v3), not folded into the reward.
loss = policy + value_coef·value_loss + kl_coef·KL. docs/rl.md says why GAE is the default.
"""
from __future__ import annotations

import torch
from torch import nn

from core.rl.losses import (clipped_policy_loss, entropy_from_logits, gae, k3_kl, masked_mean, masked_whiten,
                            token_logprobs, value_loss)
from core.rl.rollout import old_logprobs, response_logits, scaled
from core.rl.value import ScalarHeadModel
from core.train.recipes.onpolicy import Component, OnPolicyMethod, on_policy


class PolicyWithCritic(nn.Module):
    """One module for the engine (and DDP): policy logits and critic values over the response positions."""

    def __init__(self, policy, critic):
        super().__init__()
        self.policy, self.critic = policy, critic

    def forward(self, input_ids, attention_mask, prompt_width: int):
        logits, _ = response_logits(self.policy, input_ids, attention_mask, prompt_width)
        values = self.critic(input_ids, attention_mask)[:, prompt_width - 1:-1]  # V of the state before token t
        return logits, values


class Critic(Component):
    """The value model: the checkpoint's critic/ on resume, else `critic`, else the policy with a fresh head;
    trained beside the policy with its own learning rate, saved in each checkpoint's critic/."""

    def __init__(self, recipe):
        o, ctx, policy = recipe.options, recipe.ctx, recipe.policy
        if ctx.resume_from is not None:  # shaped like the saved critic; load fills it
            from core.model import io

            critic = ScalarHeadModel(io.read_model_config(ctx.resume_from / "critic")).to(ctx.device)
        elif o.critic:
            critic = ScalarHeadModel.load(o.critic, ctx.device)
        else:
            critic = ScalarHeadModel.from_causal_lm(policy)
        if critic.config.vocab_size != policy.config.vocab_size:
            raise ValueError(f"method_options.critic: {o.critic} has a vocabulary of {critic.config.vocab_size} tokens, "
                             f"the policy {policy.config.vocab_size}; the critic reads the policy's token ids, so "
                             "train the reward model from the same SFT checkpoint (or leave critic unset)")
        self.critic, self.policy, self.lr = critic.train(), policy, o.critic_lr or recipe.cfg.optim.lr

    def trainable(self, policy):
        return PolicyWithCritic(policy, self.critic)

    def param_groups(self, model) -> list[dict]:
        return [{"params": list(self.policy.parameters())}, {"params": list(self.critic.parameters()), "lr": self.lr}]

    def save(self, ckpt_dir) -> None:
        self.critic.save(ckpt_dir / "critic", kind="critic")

    def load(self, ckpt_dir) -> None:
        self.critic.load_weights(ckpt_dir / "critic")


@torch.no_grad()
def critic_advantages(recipe, r) -> None:
    o = recipe.options
    with recipe.autocast():
        values = recipe.component.critic(r.input_ids, r.attention_mask)[:, r.prompt_width - 1:-1].float()
    mask = r.response_mask
    if o.advantage == "gae":
        last = (mask.sum(-1).long() - 1).clamp(min=0)
        token_rewards = torch.zeros_like(mask).scatter_(1, last[:, None], r.rewards.float()[:, None])
        adv, returns = gae(token_rewards, values, mask, o.gamma, o.lam)
        r.advantages = masked_whiten(adv, mask)
    else:
        adv = r.rewards.float() - values[:, 0]
        returns = r.rewards.float()[:, None].expand_as(mask) * mask
        r.advantages = ((adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8))[:, None]
    r.extras = {"old_values": values * mask, "returns": returns}


def ppo_loss(recipe, model, r):
    o = recipe.options
    logits, values = model(r.input_ids, r.attention_mask, r.prompt_width)
    logits = scaled(logits, getattr(r, "temperature", 1.0))  # the sampler's distribution
    logp = token_logprobs(logits, r.input_ids[:, r.prompt_width:])
    mask = r.response_mask
    pg, ratio, clipped = clipped_policy_loss(logp, old_logprobs(r, logp), r.advantages, o.clip)
    kl = k3_kl(logp, r.ref_logp)
    policy = masked_mean(pg + o.kl_coef * kl, mask, dim=1).mean()
    if o.advantage == "gae":
        vmask = mask
    else:  # one value per reply: the prompt state's
        vmask = torch.zeros_like(mask)
        vmask[:, 0] = 1.0
    vloss = value_loss(values, r.extras["returns"], vmask, r.extras["old_values"], o.value_clip)
    with torch.no_grad():
        ent = masked_mean(entropy_from_logits(logits.detach()), mask)
        metrics = {"policy_loss": masked_mean(pg, mask, dim=1).mean(), "value_loss": vloss,
                   "kl": masked_mean(kl, mask), "entropy": ent, "clip_ratio": masked_mean(clipped, mask),
                   "ratio/mean": masked_mean(ratio, mask), "values/mean": masked_mean(values.float(), vmask)}
    return policy + o.value_coef * vloss, metrics


PPO = OnPolicyMethod(advantages=critic_advantages, loss=ppo_loss, component=Critic)
RECIPE = on_policy(PPO)
