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
from core.train.recipes.onpolicy import OnPolicyRecipe
from core.rl.rollout import old_logprobs, response_logits, scaled
from core.rl.value import ScalarHeadModel


class PolicyWithCritic(nn.Module):
    """One module for the engine (and DDP): policy logits and critic values over the response positions."""

    def __init__(self, policy, critic):
        super().__init__()
        self.policy, self.critic = policy, critic

    def forward(self, input_ids, attention_mask, prompt_width: int):
        logits, _ = response_logits(self.policy, input_ids, attention_mask, prompt_width)
        values = self.critic(input_ids, attention_mask)[:, prompt_width - 1:-1]  # V of the state before token t
        return logits, values


class PPORecipe(OnPolicyRecipe):
    def build_trainable(self):
        o = self.options
        if self.ctx.resume_from is not None:  # shaped like the saved critic; load_weights fills it
            from core.model import io

            critic = ScalarHeadModel(io.read_model_config(self.ctx.resume_from / "critic")).to(self.ctx.device)
        elif o.critic:
            critic = ScalarHeadModel.load(o.critic, self.ctx.device)
        else:
            critic = ScalarHeadModel.from_causal_lm(self.policy)
        if critic.config.vocab_size != self.policy.config.vocab_size:
            raise ValueError(f"method_options.critic: {o.critic} has a vocabulary of {critic.config.vocab_size} tokens, "
                             f"the policy {self.policy.config.vocab_size}; the critic reads the policy's token ids, so "
                             "train the reward model from the same SFT checkpoint (or leave critic unset)")
        self.critic = critic.train()
        return PolicyWithCritic(self.policy, self.critic)

    def param_groups(self) -> list[dict]:
        lr = self.options.critic_lr or self.cfg.optim.lr
        return [{"params": list(self.policy.parameters())}, {"params": list(self.critic.parameters()), "lr": lr}]

    @torch.no_grad()
    def prepare_rollout(self, r) -> None:
        o = self.options
        with self.autocast():
            values = self.critic(r.input_ids, r.attention_mask)[:, r.prompt_width - 1:-1].float()
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

    def loss_fn(self, model, batch):
        o = self.options
        r = self.rollout_for(batch)
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
        loss = policy + o.value_coef * vloss
        with torch.no_grad():
            ent = masked_mean(entropy_from_logits(logits.detach()), mask)
            metrics = {"policy_loss": masked_mean(pg, mask, dim=1).mean(), "value_loss": vloss,
                       "kl": masked_mean(kl, mask), "entropy": ent, "clip_ratio": masked_mean(clipped, mask),
                       "ratio/mean": masked_mean(ratio, mask), "values/mean": masked_mean(values.float(), vmask),
                       **self.rollout_metrics(r)}
        return loss, metrics

    def save_weights(self, ckpt_dir) -> None:
        super().save_weights(ckpt_dir)
        self.critic.save(ckpt_dir / "critic", kind="critic")

    def load_weights(self, ckpt_dir) -> None:
        super().load_weights(ckpt_dir)
        self.critic.load_weights(ckpt_dir / "critic")


RECIPE = PPORecipe
