"""What PPO, GRPO and SPO share, over the engine's recipe interface (core/train/recipe.py).

A micro-batch is a list of prompt indices. `loss_fn` samples a rollout for it (KV-cache batched sampling,
no grad), scores it, and returns the method's loss; the engine does backward, accumulation, clipping and the
step. With `updates_per_rollout` μ > 1 the sampler hands each accumulation group of prompts μ times in a row
and the recipe reuses the cached rollout, so updates 2..μ see a real ratio π/π_old ≠ 1 (PPO epochs) against
the log-probs of the policy that sampled. The cache (as plain tensors and lists: `Rollout.state_dict`), the
reference weights (and the PPO critic, the SPO tracker in the subclasses) are part of every checkpoint, so a
resume continues exactly, even from a stop in the middle of a rollout group.
"""
from __future__ import annotations


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


class OnPolicyRecipe(Recipe):
    repeats = 1  # samples per prompt (GRPO: num_generations)
    stores_old_logp = False  # a method that reads the sampling policy's log-probs outside its loss (SPO's tracker)

    @property
    def keep_old_logp(self) -> bool:
        """Score the sampling policy separately only when a rollout feeds several updates (or the method reads it)."""
        return self.stores_old_logp or self.options.updates_per_rollout > 1

    # ---- set-up ------------------------------------------------------------------------------------------
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
        self.rewards = self.build_rewards()
        self.model = self.build_trainable()
        self._cache: dict[tuple, list] = {}   # prompt indices -> [rollout, updates done]
        self._step_rollouts: list = []        # rollouts sampled during the current optimizer step
        self._last_used = None                # the rollout of the last micro-batch (for `sample` events)
        self._last_tokens = 0

    def build_rewards(self):
        from core.rl.rewards import RewardCombiner

        return RewardCombiner(self.options.rewards, self.ctx.device, self.ctx.autocast_dtype)

    def build_trainable(self):
        return self.policy

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

    def dataset_tokens(self):
        return None

    # ---- the step ----------------------------------------------------------------------------------------
    def rollout_for(self, batch: dict):
        key = tuple(batch["index"])
        entry = self._cache.get(key)
        if entry is None:
            r = self.sample_rollout(batch["items"])
            # weight casts that autocast cached while sampling (no grad, maybe inference mode) must not serve the
            # training forward: on torch builds without pytorch#158232's fix they break backward when eager
            torch.clear_autocast_cache()
            self.prepare_rollout(r)
            entry = self._cache[key] = [r, 0]
            self._step_rollouts.append(r)
        entry[1] += 1
        if entry[1] >= self.options.updates_per_rollout:
            del self._cache[key]
        r = self._last_used = entry[0]
        self._last_tokens = int(r.attention_mask.sum())
        return r

    def sample_rollout(self, items: list[dict]):
        """A fresh Rollout for these prompt items: `repeats` single-turn samples each, scored by the reward sources."""
        from core.rl.rollout import make_rollout

        return make_rollout(self.policy, self.reference, self.tokenizer, self.rewards, items, self.options,
                            self.ctx.device, self.repeats, self.autocast, self.keep_old_logp)

    def prepare_rollout(self, r) -> None:
        """Set r.advantages (and method extras) once per rollout."""
        raise NotImplementedError

    def rollout_metrics(self, r) -> dict:
        adv = r.advantages.float()
        m = {"reward/mean": r.rewards.mean(), "reward/std": r.rewards.std(unbiased=False),
             "response_length": r.response_lengths.float().mean(),
             "advantages/mean": adv.mean() if adv.shape[1] == 1 else (adv * r.response_mask).sum() / r.response_mask.sum(),
             "advantages/std": adv.std(unbiased=False) if adv.shape[1] == 1 else adv[r.response_mask.bool()].std(unbiased=False)}
        for key, scores in r.breakdown.items():
            m[f"reward/{key}"] = sum(scores) / max(len(scores), 1)
        return m

    def on_step_end(self, step: int, metrics: dict) -> None:
        o = self.options
        r = self._last_used
        if o.sample_every and step % o.sample_every == 0 and r is not None and self.ctx.is_main:
            n = min(o.samples_logged, len(r.completions))
            samples = [{"prompt": r.prompts[i], "completion": r.completions[i], "reward": float(r.rewards[i]),
                        "rewards": {k: v[i] for k, v in r.breakdown.items()}} for i in range(n)]
            emit = self.ctx.extras.get("emit")
            if emit is not None:
                emit("sample", step, samples=samples)
        self.after_step(step, self._step_rollouts)
        self._step_rollouts = []

    def after_step(self, step: int, rollouts: list) -> None:
        pass

    # ---- checkpoints -------------------------------------------------------------------------------------
    def save_weights(self, ckpt_dir) -> None:
        from core.model import io

        io.save_checkpoint(self.policy, ckpt_dir, tokenizer=self.tokenizer)
        save_reference(self.reference, ckpt_dir)

    def load_weights(self, ckpt_dir) -> None:
        from core.model import io

        io.load_weights_into(self.policy, io.read_weights(ckpt_dir / io.WEIGHTS), str(ckpt_dir / io.WEIGHTS))
        load_reference(self.reference, ckpt_dir)

    def extra_state(self) -> dict:
        # CPU copies as plain data: the live rollouts stay where they are (on the GPU) and unchanged
        return {"rollout_cache": [{"prompts": list(k), "updates": n, "rollout": r.state_dict()}
                                  for k, (r, n) in self._cache.items()]}

    def load_extra_state(self, state: dict) -> None:
        from core.rl.rollout import Rollout

        self._cache = {tuple(e["prompts"]): [Rollout.from_state_dict(e["rollout"], self.ctx.device), e["updates"]]
                       for e in state.get("rollout_cache", [])}

    # ---- evaluation: greedy replies on held-out prompts --------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model, batches) -> dict:
        from core.rl.rewards import RewardInputs, answer_score
        from core.rl.rollout import sample

        tot = {"eval/reward": [0.0, 0.0], "eval/accuracy": [0.0, 0.0], "eval/response_length": [0.0, 0.0]}
        for batch in batches:
            items = batch["items"]
            prompts = [list(it["prompt_ids"])[-self.options.max_prompt_len:] for it in items]
            outs = sample(self.policy, self.tokenizer, prompts, self.options.eval_max_new_tokens, 0.0)  # greedy
            texts = [self.tokenizer.decode(c, skip_special_tokens=True) for c in outs]
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
