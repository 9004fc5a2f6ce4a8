"""DPO (Rafailov et al. 2023) against a frozen reference (the starting checkpoint unless `reference` is set).

Batch = [chosen; rejected] rows masked like SFT (loss only on the assistant reply). Sequence log-probs are
sums (the paper) or means over reply tokens (`length_normalised`, MiniMind's variant). Metrics follow TRL:
rewards/chosen, rewards/rejected (β·(log π − log ref)), rewards/margins, rewards/accuracies, logps/chosen,
logps/rejected. Eval adds preference_accuracy: the share of held-out pairs whose chosen reply the policy
itself finds more likely (meaningful from step 0, unlike the implicit-reward accuracy, which starts at 0).
"""
from __future__ import annotations

import torch

from core.rl.losses import dpo_loss, sequence_logprobs
from core.train.recipe import Recipe, data_cache_dir, load_reference, require_files, save_reference


class DPORecipe(Recipe):
    def setup(self) -> None:
        from core.data import DPODataset

        if not self.cfg.init and self.ctx.resume_from is None:
            self.ctx.warn("dpo: no `init` checkpoint; DPO starts from a random model (the reference is random too)")
        self.tokenizer = self.load_tokenizer()
        self.model = self.build_model().to(self.ctx.device)
        self.reference = self.build_reference(self.model, self.options.reference)
        cache, d = data_cache_dir(self.cfg, self.ctx.run_dir), self.cfg.data
        self.train_dataset = DPODataset(require_files(self.cfg), self.tokenizer, d.max_len, cache, d.on_error)
        if d.eval_files:
            self.eval_dataset = DPODataset(d.eval_files, self.tokenizer, d.max_len, cache, d.on_error)

    def collate(self, items):
        from core.data import collate_dpo

        return collate_dpo(items, self.tokenizer.pad_id)

    def batch_sampler(self, dataset, epoch, skip_batches, shuffle=True):
        from core.data import LengthGroupedBatchSampler

        return LengthGroupedBatchSampler(dataset.lengths, self.cfg.batch_size, self.cfg.seed, epoch, self.ctx.rank,
                                         self.ctx.world_size, drop_last=False, skip_batches=skip_batches)

    def loss_weight(self, batch) -> float:
        return batch["input_ids"].shape[0] / 2  # pairs

    def _logps(self, model, batch):
        # right padding: causal attention never lets a real token see a pad, so no mask is needed
        out = model(batch["input_ids"])
        lp = sequence_logprobs(out.logits, batch["labels"], self.options.length_normalised)
        return lp.chunk(2), out.aux_loss

    def loss_fn(self, model, batch):
        (pc, pr), aux = self._logps(model, batch)
        with torch.no_grad():
            (rc, rr), _ = self._logps(self.reference, batch)
        loss, chosen_r, rejected_r = dpo_loss(pc, pr, rc, rr, self.options.beta)
        metrics = {"dpo_loss": loss.detach(), "aux_loss": aux, "rewards/chosen": chosen_r.mean(),
                   "rewards/rejected": rejected_r.mean(), "rewards/margins": (chosen_r - rejected_r).mean(),
                   "rewards/accuracies": (chosen_r > rejected_r).float().mean(),
                   "logps/chosen": pc.detach().mean(), "logps/rejected": pr.detach().mean()}
        return loss + aux, metrics

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict:
        tot = {"eval/loss": [0.0, 0.0], "eval/rewards_accuracy": [0.0, 0.0],
               "eval/preference_accuracy": [0.0, 0.0], "eval/margin": [0.0, 0.0]}
        for batch in batches:
            (pc, pr), _ = self._logps(model, batch)
            (rc, rr), _ = self._logps(self.reference, batch)
            loss, cr, rj = dpo_loss(pc, pr, rc, rr, self.options.beta)
            n = float(pc.shape[0])
            for key, value in (("eval/loss", float(loss) * n), ("eval/rewards_accuracy", float((cr > rj).sum())),
                               ("eval/preference_accuracy", float((pc > pr).sum())),
                               ("eval/margin", float((cr - rj).sum()))):
                tot[key][0] += value
                tot[key][1] += n
        return {k: tuple(v) for k, v in tot.items()}

    def save_weights(self, ckpt_dir) -> None:
        super().save_weights(ckpt_dir)
        save_reference(self.reference, ckpt_dir)

    def load_weights(self, ckpt_dir) -> None:
        super().load_weights(ckpt_dir)
        load_reference(self.reference, ckpt_dir)


RECIPE = DPORecipe
