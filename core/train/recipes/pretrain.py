"""Pretraining: next-token loss on packed windows (no padding; every token counts)."""
from __future__ import annotations

from core.train.recipe import Recipe, causal_lm_loss, data_cache_dir, require_files


class PretrainRecipe(Recipe):
    def setup(self) -> None:
        from core.data import PretrainDataset

        self.tokenizer = self.load_tokenizer()
        self.model = self.build_model().to(self.ctx.device)
        cache = data_cache_dir(self.cfg, self.ctx.run_dir)
        d = self.cfg.data
        self.train_dataset = PretrainDataset(require_files(self.cfg), self.tokenizer, d.seq_len, cache, d.on_error)
        if d.eval_files:
            self.eval_dataset = PretrainDataset(d.eval_files, self.tokenizer, d.seq_len, cache, d.on_error)

    def loss_fn(self, model, batch):  # packed windows: no padding, every token counts
        return causal_lm_loss(model, batch)


RECIPE = PretrainRecipe
