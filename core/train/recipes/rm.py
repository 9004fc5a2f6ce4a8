"""Reward model (Bradley–Terry; Ouyang et al. 2022 eq. 1) from preference pairs: a MiniMind backbone (from
`init`) + a scalar head on the final normed hidden state at the last real token. The checkpoint directory
(backbone model.safetensors + value_head.safetensors + model_config.json + tokenizer/) is a reward source:
`{"type": "reward_model", "path": RUN_DIR}`. Eval events report held-out pair accuracy.
"""
from __future__ import annotations

import torch

from core.rl.losses import bradley_terry_loss
from core.rl.value import ScalarHeadModel, last_token_values
from core.train.recipe import data_cache_dir, require_files
from core.train.recipes.dpo import DPORecipe


class RMRecipe(DPORecipe):
    def setup(self) -> None:
        from core.data import DPODataset

        self.tokenizer = self.load_tokenizer()
        self.model = ScalarHeadModel.from_causal_lm(self.build_model()).to(self.ctx.device)
        cache, d = data_cache_dir(self.cfg, self.ctx.run_dir), self.cfg.data
        self.train_dataset = DPODataset(require_files(self.cfg), self.tokenizer, d.max_len, cache, d.on_error)
        if d.eval_files:
            self.eval_dataset = DPODataset(d.eval_files, self.tokenizer, d.max_len, cache, d.on_error)

    def _scores(self, model, batch):
        values = model(batch["input_ids"])  # right padding: no mask needed, the last real token is read below
        return last_token_values(values, batch["attention_mask"]).chunk(2)

    def loss_fn(self, model, batch):
        sc, sr = self._scores(model, batch)
        loss = bradley_terry_loss(sc, sr)
        if self.options.center_coef:
            loss = loss + self.options.center_coef * torch.cat([sc, sr]).pow(2).mean()
        metrics = {"accuracy": (sc > sr).float().mean(), "rewards/chosen": sc.detach().mean(),
                   "rewards/rejected": sr.detach().mean(), "rewards/margins": (sc - sr).detach().mean()}
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict:
        tot = {"eval/loss": [0.0, 0.0], "eval/accuracy": [0.0, 0.0], "eval/margin": [0.0, 0.0]}
        for batch in batches:
            sc, sr = self._scores(model, batch)
            n = float(sc.shape[0])
            for key, value in (("eval/loss", float(bradley_terry_loss(sc, sr)) * n),
                               ("eval/accuracy", float((sc > sr).sum())), ("eval/margin", float((sc - sr).sum()))):
                tot[key][0] += value
                tot[key][1] += n
        return {k: tuple(v) for k, v in tot.items()}

    def save_weights(self, ckpt_dir) -> None:
        self.model.save(ckpt_dir, self.tokenizer, kind="reward_model")

    def load_weights(self, ckpt_dir) -> None:
        self.model.load_weights(ckpt_dir)


RECIPE = RMRecipe
