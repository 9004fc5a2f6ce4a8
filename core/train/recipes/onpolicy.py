"""The on-policy recipe that PPO, GRPO, SPO and agent RL share, over the engine's recipe interface
(core/train/recipe.py). A method is not a subclass: it is an `OnPolicyMethod`, the few functions and parts that
make it (advantages, loss, and optionally samples per prompt, a rollout source and a stateful component), all
built from the maths in core/rl. Each method's file defines one and ends with `RECIPE = on_policy(METHOD)`.

A micro-batch is a list of prompt indices. `loss_fn` samples a rollout for it (KV-cache batched sampling,
no grad), scores it, sets its advantages once, and returns the method's loss; the engine does backward,
accumulation, clipping and the step. With `updates_per_rollout` μ > 1 the sampler hands each accumulation group
of prompts μ times in a row and the recipe reuses the cached rollout, so updates 2..μ see a real ratio
π/π_old ≠ 1 (PPO epochs) against the log-probs of the policy that sampled. The cache (as plain tensors and lists:
`Rollout.state_dict`), the reference weights and the component's state (PPO's critic, SPO's tracker) are part of
every checkpoint, so a resume continues exactly, even from a stop in the middle of a rollout group.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch

from core.train.recipe import Recipe, load_reference, require_files, save_reference

class RepeatedPromptSampler:
    """Global prompt batches in a (seed, epoch) order; each group of `group` batches is yielded `repeats`
    times in a row. `skip_batches` counts yielded batches (exact resume). Rank r takes its slice of each."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int, skip: int,
                 repeats: int = 1, group: int = 1, shuffle: bool = True):
        self.n, self.bs, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world, self.skip, self.repeats, self.group, self.shuffle = rank, world, skip, repeats, group, shuffle

    def _stream(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist() \
            if self.shuffle else list(range(self.n))
        batches = [order[k * self.bs:(k + 1) * self.bs] for k in range(self.n // self.bs)]
        groups = len(batches) // self.group
        for g in range(groups):
            chunk = batches[g * self.group:(g + 1) * self.group]
            for _ in range(self.repeats):
                yield from chunk

    def num_batches(self) -> int:
        return (self.n // self.bs) // self.group * self.group * self.repeats

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.skip)

    def __iter__(self):
        per = self.bs // self.world
        for k, batch in enumerate(self._stream()):
            if k >= self.skip:
                yield batch[self.rank * per:(self.rank + 1) * per]


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return {**self.ds[i], "index": i}


class Component:
    """The state an on-policy method keeps beside the policy and reference (PPO's critic, SPO's value tracker).
    Each hook's default does nothing; a method's component overrides the ones it needs."""
    reads_old_logp = False  # reads the sampling policy's log-probs outside the loss (SPO's tracker)

    def __init__(self, recipe: "OnPolicyRecipe"):
        pass

    def trainable(self, policy):
        """The module the engine trains (and wraps in DDP): the policy, or the policy with a critic."""
        return policy

    def param_groups(self, model) -> list[dict]:
        return [{"params": [p for p in model.parameters() if p.requires_grad]}]

    def save(self, ckpt_dir) -> None:
        pass

    def load(self, ckpt_dir) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def after_step(self, rollouts: list) -> None:
        """After each optimizer step, with the rollouts sampled during it (on this rank)."""


class SingleTurn:
    """The default rollout source: `samples_per_prompt` single-turn replies per prompt, scored by the configured
    reward sources (core/rl/rewards.py); greedy replies on held-out prompts for evaluation."""

    def __init__(self, recipe: "OnPolicyRecipe"):
        from core.rl.rewards import RewardCombiner

        self.recipe = recipe
        self.rewards = RewardCombiner(recipe.options.rewards, recipe.ctx.device, recipe.ctx.autocast_dtype)

    def sample(self, items: list[dict]):
        from core.rl.rollout import make_rollout

        r = self.recipe
        return make_rollout(r.policy, r.reference, r.tokenizer, self.rewards, items, r.options, r.ctx.device,
                            r.samples_per_prompt, r.autocast, r.keep_old_logp)

    def metrics(self, m: dict, rollout) -> dict:
        return m

    def evaluate(self, batches) -> dict:
        from core.rl.rewards import RewardInputs, answer_score
        from core.rl.rollout import sample

        r = self.recipe
        tot = {"eval/reward": [0.0, 0.0], "eval/accuracy": [0.0, 0.0], "eval/response_length": [0.0, 0.0]}
        for batch in batches:
            items = batch["items"]
            prompts = [list(it["prompt_ids"])[-r.options.max_prompt_len:] for it in items]
            outs = sample(r.policy, r.tokenizer, prompts, r.options.eval_max_new_tokens, 0.0)  # greedy
            texts = [r.tokenizer.decode(c, skip_special_tokens=True) for c in outs]
            total, _ = self.rewards(RewardInputs(texts, [it.get("answer") for it in items],
                                                 [it["messages"] for it in items], outs))
            tot["eval/reward"][0] += float(total.sum())
            tot["eval/reward"][1] += len(items)
            tot["eval/response_length"][0] += sum(len(o) for o in outs)
            tot["eval/response_length"][1] += len(items)
            for it, t in zip(items, texts):
                if it.get("answer") is not None:
                    tot["eval/accuracy"][0] += float(answer_score(t, str(it["answer"]), 0.0) == 1.0)
                    tot["eval/accuracy"][1] += 1
        return {k: tuple(v) for k, v in tot.items()}


@dataclass(frozen=True)
class OnPolicyMethod:
    """What makes one on-policy method; everything else is the shared `OnPolicyRecipe`."""
    advantages: Callable[[Any, Any], None]              # (recipe, rollout): set rollout.advantages, once per rollout
    loss: Callable[[Any, Any, Any], tuple[torch.Tensor, dict]]  # (recipe, model, rollout) -> (loss, metrics)
    samples_per_prompt: Callable[[Any], int] = lambda options: 1  # GRPO: options.num_generations
    rollouts: Callable[[Any], Any] = SingleTurn         # (recipe) -> source: sample, metrics, evaluate
    component: Callable[[Any], Component] = Component   # (recipe) -> the method's own state


class OnPolicyRecipe(Recipe):
    def __init__(self, cfg, ctx, method: OnPolicyMethod):
        super().__init__(cfg, ctx)
        self.method = method
        self.samples_per_prompt = method.samples_per_prompt(self.options)

    @property
    def keep_old_logp(self) -> bool:
        """Score the sampling policy separately only when a rollout feeds several updates (or the method reads it)."""
        return self.component.reads_old_logp or self.options.updates_per_rollout > 1

    def setup(self) -> None:
        from core.data import PromptDataset
        from core.methods import get_method

        o, d = self.options, self.cfg.data
        if not self.cfg.init and self.ctx.resume_from is None:
            self.ctx.warn(f"{self.cfg.method}: no `init` checkpoint; RL from a random model rarely learns — "
                          "start from an SFT checkpoint")
        self.tokenizer = self.load_tokenizer()
        self.policy = self.build_model().to(self.ctx.device)
        self.reference = self.build_reference(self.policy, o.reference)
        kind = get_method(self.cfg.method).data_kind  # rl prompts, or agent tasks (tools + gt)
        self.train_dataset = _Indexed(PromptDataset(require_files(self.cfg), self.tokenizer, o.max_prompt_len,
                                                    d.on_error, kind=kind))
        if d.eval_files:
            self.eval_dataset = _Indexed(PromptDataset(d.eval_files, self.tokenizer, o.max_prompt_len, d.on_error,
                                                       kind=kind))
        self.rollouts = self.method.rollouts(self)
        self.component = self.method.component(self)
        self.model = self.component.trainable(self.policy)
        self._cache: dict[tuple, list] = {}   # prompt indices -> [rollout, updates done]
        self._step_rollouts: list = []        # rollouts sampled during the current optimizer step
        self._last_used = None                # the rollout of the last micro-batch (for `sample` events)
        self._last_tokens = 0

    def autocast(self):
        from core.precision import autocast

        return autocast(self.ctx.device, self.ctx.autocast_dtype)

    # ---- data --------------------------------------------------------------------------------------------
    def collate(self, items: list[dict]) -> dict:
        return {"items": items, "index": [it["index"] for it in items]}

    def batch_sampler(self, dataset, epoch: int, skip_batches: int, shuffle: bool = True):
        train = dataset is self.train_dataset and shuffle
        return RepeatedPromptSampler(len(dataset), self.cfg.batch_size, self.cfg.seed, epoch, self.ctx.rank,
                                     self.ctx.world_size, skip_batches,
                                     repeats=self.options.updates_per_rollout if train else 1,
                                     group=self.cfg.optim.accumulation if train else 1, shuffle=shuffle)

    def loss_weight(self, batch) -> float:
        return 1.0

    def useful_tokens(self, batch) -> int:
        return self._last_tokens

    # ---- the step ----------------------------------------------------------------------------------------
    def loss_fn(self, model, batch):
        r = self.rollout_for(batch)
        loss, metrics = self.method.loss(self, model, r)
        with torch.no_grad():
            metrics.update(self.rollout_metrics(r))
        return loss, metrics

    def rollout_for(self, batch: dict):
        """The rollout of these prompts: sampled, scored and given advantages at its first use, then cached for
        the `updates_per_rollout` updates it feeds."""
        key = tuple(batch["index"])
        entry = self._cache.get(key)
        if entry is None:
            r = self.rollouts.sample(batch["items"])
            # weight casts that autocast cached while sampling (no grad, maybe inference mode) must not serve the
            # training forward: on torch builds without pytorch#158232's fix they break backward when eager
            torch.clear_autocast_cache()
            self.method.advantages(self, r)
            entry = self._cache[key] = [r, 0]
            self._step_rollouts.append(r)
        entry[1] += 1
        if entry[1] >= self.options.updates_per_rollout:
            del self._cache[key]
        r = self._last_used = entry[0]
        self._last_tokens = int(r.attention_mask.sum())
        return r

    def rollout_metrics(self, r) -> dict:
        adv = r.advantages.float()
        m = {"reward/mean": r.rewards.mean(), "reward/std": r.rewards.std(unbiased=False),
             "response_length": r.response_lengths.float().mean(),
             "advantages/mean": adv.mean() if adv.shape[1] == 1 else (adv * r.response_mask).sum() / r.response_mask.sum(),
             "advantages/std": adv.std(unbiased=False) if adv.shape[1] == 1 else adv[r.response_mask.bool()].std(unbiased=False)}
        for key, scores in r.breakdown.items():
            m[f"reward/{key}"] = sum(scores) / max(len(scores), 1)
        return self.rollouts.metrics(m, r)

    def on_step_end(self, step: int, metrics: dict) -> None:
        o = self.options
        r = self._last_used
        if o.sample_every and step % o.sample_every == 0 and r is not None and self.ctx.is_main:
            n = min(o.samples_logged, len(r.completions))
            samples = [{"prompt": r.prompts[i], "completion": r.completions[i], "reward": float(r.rewards[i]),
                        "rewards": {k: v[i] for k, v in r.breakdown.items()}} for i in range(n)]
            self.ctx.emit("sample", step, samples=samples)
        self.component.after_step(self._step_rollouts)
        self._step_rollouts = []

    # ---- parameters and checkpoints ----------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        return self.component.param_groups(self.model)

    def save_weights(self, ckpt_dir) -> None:
        from core.model import io

        io.save_checkpoint(self.policy, ckpt_dir, tokenizer=self.tokenizer)
        save_reference(self.reference, ckpt_dir)
        self.component.save(ckpt_dir)

    def load_weights(self, ckpt_dir) -> None:
        from core.model import io

        io.load_weights_into(self.policy, io.read_weights(ckpt_dir / io.WEIGHTS), str(ckpt_dir / io.WEIGHTS))
        load_reference(self.reference, ckpt_dir)
        self.component.load(ckpt_dir)

    def extra_state(self) -> dict:
        # CPU copies as plain data: the live rollouts stay where they are (on the GPU) and unchanged
        return {"rollout_cache": [{"prompts": list(k), "updates": n, "rollout": r.state_dict()}
                                  for k, (r, n) in self._cache.items()], **self.component.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        from core.rl.rollout import Rollout

        self._cache = {tuple(e["prompts"]): [Rollout.from_state_dict(e["rollout"], self.ctx.device), e["updates"]]
                       for e in state.get("rollout_cache", [])}
        self.component.load_state_dict(state)

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict:
        return self.rollouts.evaluate(batches)


def on_policy(method: OnPolicyMethod):
    """A method's RECIPE: the shared on-policy recipe, made with `method`."""
    return functools.partial(OnPolicyRecipe, method=method)
