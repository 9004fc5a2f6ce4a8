"""White-box knowledge distillation (Hinton et al. 2015; MiniMind `train_distillation.py`):
loss = α·CE(student, data) + (1−α)·T²·KL(softmax(teacher/T) ‖ softmax(student/T)),
the KL averaged over the tokens that carry loss: assistant tokens of SFT conversations, every token of
pretraining text (the data kind is detected from the files). The teacher is any checkpoint that shares the
student's tokenizer, frozen, run without gradients in the training precision; its logits are cut to the
student's vocabulary. Metrics: ce, kl, distill_loss (= the weighted sum before aux_loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from core.train.recipe import data_cache_dir, require_files
from core.train.recipes.sft import SFTRecipe


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(p_teacher ‖ p_student) at temperature T, mean over rows (tokens): (N, V) logits each."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2


class DistillRecipe(SFTRecipe):
    def setup(self) -> None:
        from core.data import PretrainDataset, SFTDataset, detect_kind

        files = require_files(self.cfg)
        self.kind = "pretrain" if detect_kind(files[0]) in ("pretrain", "text") else "sft"
        self.tokenizer = self.load_tokenizer()
        self.model = self.build_model().to(self.ctx.device)
        self.teacher = self._load_teacher()
        cache, d = data_cache_dir(self.cfg, self.ctx.run_dir), self.cfg.data
        if self.kind == "pretrain":
            make = lambda fs: PretrainDataset(fs, self.tokenizer, d.seq_len, cache, d.on_error)  # noqa: E731
        else:
            make = lambda fs: SFTDataset(fs, self.tokenizer, d.max_len, cache, d.on_error)  # noqa: E731
        self.train_dataset = make(files)
        if d.eval_files:
            self.eval_dataset = make(d.eval_files)

    def _load_teacher(self):
        from core.model import io

        path = self.options.teacher
        teacher, teacher_tok = io.load_model(path, device=self.ctx.device)
        if teacher_tok.hash != self.tokenizer.hash:
            raise ValueError(f"method_options.teacher: {path} uses tokenizer {teacher_tok.hash[:12]} "
                             f"({teacher_tok.vocab_size} tokens), the student tokenizer {self.tokenizer.hash[:12]} "
                             f"({self.tokenizer.vocab_size} tokens); distillation compares the two models' "
                             "distributions token by token, so both must use one tokenizer")
        if teacher.config.vocab_size < self.model.config.vocab_size:
            raise ValueError(f"method_options.teacher: {path} has {teacher.config.vocab_size} output tokens, fewer "
                             f"than the student's {self.model.config.vocab_size}")
        # fp32 weights run under the engine's autocast, as the student: a pure bf16/fp16 copy differs in its norms
        # and residual stream (and pure fp16 risks overflow on cards without bf16)
        return teacher.float().eval().requires_grad_(False)

    # packed pretraining windows when the data is text, length-grouped conversations otherwise
    def collate(self, items):
        return super().collate(items) if self.kind == "sft" else torch.utils.data.default_collate(items)

    def batch_sampler(self, dataset, epoch, skip_batches, shuffle=True):
        if self.kind == "sft":
            return super().batch_sampler(dataset, epoch, skip_batches, shuffle)
        from core.train.recipe import Recipe

        return Recipe.batch_sampler(self, dataset, epoch, skip_batches, shuffle)

    def loss_fn(self, model, batch):
        o = self.options
        out = model(batch["input_ids"], labels=batch["labels"])
        with torch.no_grad():
            teacher_logits = self.teacher(batch["input_ids"]).logits[..., :out.logits.shape[-1]]
        keep = batch["labels"][:, 1:] != -100  # the positions that carry CE: predict token t+1 from t
        kl = distill_kl(out.logits[:, :-1][keep], teacher_logits[:, :-1][keep], o.temperature)
        ce = out.ce_loss
        distill = o.alpha * ce + (1.0 - o.alpha) * kl
        return distill + out.aux_loss, {"ce": ce.detach(), "kl": kl.detach(), "distill_loss": distill.detach(),
                                        "aux_loss": out.aux_loss}

    @torch.no_grad()
    def evaluate(self, model, batches) -> dict:
        """Token-weighted held-out loss, CE and T²·KL to the teacher (`eval/loss`, `eval/ce`, `eval/kl`)."""
        tot = {"eval/loss": [0.0, 0.0], "eval/ce": [0.0, 0.0], "eval/kl": [0.0, 0.0]}
        for batch in batches:
            loss, m = self.loss_fn(model, batch)
            w = self.loss_weight(batch)
            for key, value in (("eval/loss", loss), ("eval/ce", m["ce"]), ("eval/kl", m["kl"])):
                tot[key][0] += float(value) * w
                tot[key][1] += w
        return {k: tuple(v) for k, v in tot.items()}


RECIPE = DistillRecipe
