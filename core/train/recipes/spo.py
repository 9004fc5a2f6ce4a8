"""SPO (single-stream policy optimisation, MiniMind v2 `train_spo.py`; Xu et al. 2025): one sample per prompt,
advantage against a persistent Beta value tracker instead of a group, k3 KL to the reference.

A = clamp(r − b, ±adv_clip), b = the tracker's baseline in reward units; after each optimizer step the tracker
absorbs the step's rewards with forgetting factor ρ (core/rl/value.py BetaValueTracker, docs/rl.md). The
tracker is checkpointed (MiniMind did not), so a resume continues with the same baseline.
"""
from __future__ import annotations

import torch

from core.rl.losses import clipped_policy_loss, k3_kl, masked_mean
from core.rl.rollout import old_logprobs, response_logprobs
from core.rl.value import BetaValueTracker
from core.train.recipes.onpolicy import Component, OnPolicyMethod, on_policy


class Baseline(Component):
    """The persistent value tracker, updated after each optimizer step and checkpointed."""
    reads_old_logp = True  # the tracker reads the sampling policy's mean log-prob after the step

    def __init__(self, recipe):
        o = recipe.options
        self.device = recipe.ctx.device
        self.tracker = BetaValueTracker(o.r_min, o.r_max, d_half=o.d_half, rho_min=o.rho_min, rho_max=o.rho_max)

    def after_step(self, rollouts: list) -> None:
        if not rollouts:
            return
        from core.train import distributed as dist

        rewards = torch.cat([r.rewards.float().cpu() for r in rollouts])
        mask = torch.cat([r.response_mask.cpu().flatten() for r in rollouts])
        logp = torch.cat([r.old_logp.cpu().flatten() for r in rollouts])
        mean_logprob = float((logp * mask).sum() / mask.sum().clamp(min=1))
        # every rank must hold the same tracker: average the step's statistics over ranks
        s = dist.all_reduce_sum([float(self.tracker.normalise(rewards).mean()), mean_logprob, 1.0], self.device)
        self.tracker.update_normalised(s[0] / s[2], s[1] / s[2])

    def state_dict(self) -> dict:
        return {"spo_tracker": self.tracker.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "spo_tracker" in state:
            self.tracker.load_state_dict(state["spo_tracker"])


def baseline_advantages(recipe, r) -> None:
    o = recipe.options
    r.advantages = (r.rewards - recipe.component.tracker.baseline).clamp(-o.adv_clip, o.adv_clip)[:, None]


def spo_loss(recipe, model, r):
    o, tracker = recipe.options, recipe.component.tracker
    logp, entropy = response_logprobs(model, r, with_entropy=True)
    pg, ratio, clipped = clipped_policy_loss(logp, old_logprobs(r, logp), r.advantages, 0.2)
    kl = k3_kl(logp, r.ref_logp)
    loss = masked_mean(pg + o.kl_coef * kl, r.response_mask, dim=1).mean()
    with torch.no_grad():
        metrics = {"policy_loss": masked_mean(pg, r.response_mask, dim=1).mean(),
                   "kl": masked_mean(kl, r.response_mask), "entropy": entropy,
                   "clip_ratio": masked_mean(clipped, r.response_mask),
                   "baseline": tracker.baseline, "rho": tracker.rho}
    return loss, metrics


SPO = OnPolicyMethod(advantages=baseline_advantages, loss=spo_loss, component=Baseline)
RECIPE = on_policy(SPO)
