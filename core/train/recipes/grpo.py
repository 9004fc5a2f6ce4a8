"""GRPO (Shao et al. 2024, DeepSeekMath §4): G samples per prompt, group-normalised advantages, PPO-clipped
ratio against the sampling policy's log-probs, k3 KL to the frozen reference. Loss per sequence = token mean,
then mean over sequences (DeepSeekMath eq. 3). Settings: core/config/rl.py GRPOConfig; docs/rl.md.
"""
from __future__ import annotations

import torch

from core.rl.losses import clipped_policy_loss, group_advantages, k3_kl, masked_mean
from core.train.recipes.onpolicy import OnPolicyRecipe
from core.rl.rollout import response_logprobs


class GRPORecipe(OnPolicyRecipe):
    def setup(self) -> None:
        self.repeats = self.options.num_generations
        super().setup()

    def prepare_rollout(self, r) -> None:
        r.advantages = group_advantages(r.rewards, self.repeats, scale=self.options.scale_rewards)[:, None]

    def loss_fn(self, model, batch):
        o = self.options
        r = self.rollout_for(batch)
        logp, entropy = response_logprobs(model, r, with_entropy=True)
        pg, ratio, clipped = clipped_policy_loss(logp, r.old_logp, r.advantages, o.clip, o.clip_high)
        kl = k3_kl(logp, r.ref_logp)
        per_token = pg + o.kl_coef * kl
        loss = masked_mean(per_token, r.response_mask, dim=1).mean()
        with torch.no_grad():
            metrics = {"policy_loss": masked_mean(pg, r.response_mask, dim=1).mean(),
                       "kl": masked_mean(kl, r.response_mask), "entropy": entropy,
                       "clip_ratio": masked_mean(clipped, r.response_mask),
                       "ratio/mean": masked_mean(ratio, r.response_mask), **self.rollout_metrics(r)}
        return loss, metrics


RECIPE = GRPORecipe
