"""Supervised fine-tuning: loss on assistant replies only, length-grouped batches of chat samples."""
from __future__ import annotations

from core.train.recipe import Recipe, causal_lm_loss, data_cache_dir, require_files


class SFTRecipe(Recipe):
    def setup(self) -> None:
        from core.data import SFTDataset

        self.tokenizer = self.load_tokenizer()
        self.model = self.prepare_model(self.build_model()).to(self.ctx.device)
        cache = data_cache_dir(self.cfg, self.ctx.run_dir)
        d = self.cfg.data
        self.train_dataset = SFTDataset(require_files(self.cfg), self.tokenizer, d.max_len, cache, d.on_error)
        if self.train_dataset.truncated_fraction > 0.05:
            self.ctx.warn(f"{self.train_dataset.truncated_fraction:.0%} of the conversations are longer than "
                          f"data.max_len={d.max_len} tokens and were truncated; consider a larger max_len")
        if d.eval_files:
            self.eval_dataset = SFTDataset(d.eval_files, self.tokenizer, d.max_len, cache, d.on_error)

    def prepare_model(self, model):
        """Hook for subclasses (LoRA) to wrap the model before it moves to the device."""
        return model

    def collate(self, items: list[dict]) -> dict:
        from core.data import collate_pad

        return collate_pad(items, self.tokenizer.pad_id)

    def batch_sampler(self, dataset, epoch: int, skip_batches: int, shuffle: bool = True):
        from core.data import LengthGroupedBatchSampler

        # shuffle=False (evaluation) still groups by length: the order only has to be fixed, not random
        return LengthGroupedBatchSampler(dataset.lengths, self.cfg.batch_size, self.cfg.seed, epoch, self.ctx.rank,
                                         self.ctx.world_size, drop_last=False, skip_batches=skip_batches)

    def loss_fn(self, model, batch):
        # No attention mask: padding is on the right, so causal attention never lets a real token see a pad,
        # and the fused SDPA path stays available (MiniMind does the same).
        return causal_lm_loss(model, batch)


RECIPE = SFTRecipe
