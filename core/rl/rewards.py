"""Reward sources for RL, pluggable and combined with weights (`RewardConfig.sources`).

Each source maps a batch of rollouts to one float per sample; `RewardCombiner` returns the weighted total and
the per-source breakdown that `sample` events carry. Everything runs offline: rule rewards, a reward model
trained here (`minimind train rm`), or a local transformers classifier folder when transformers is installed.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import torch

from core.config.rl import (AnswerReward, FormatReward, HFClassifierReward, LengthReward, RepetitionReward,
                            RewardConfig, RewardModelReward)


@dataclass
class RewardInputs:
    """What a reward can look at, one entry per sample."""
    completions: list[str]
    answers: list[str | None] = field(default_factory=list)
    messages: list[list[dict]] = field(default_factory=list)     # the prompt conversation
    completion_ids: list[list[int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.completions)


# ---- rule rewards ---------------------------------------------------------------------------------------------

def normalise_text(text: str) -> str:
    """Lower case, punctuation (ASCII and CJK) removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    return " ".join(text.split())


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def answer_score(reply: str, answer: str, partial: float = 0.2) -> float:
    """1 if the reply is the answer, or starts with it (its first number for numeric answers, else its first
    word); `partial` if the answer occurs elsewhere as a whole word; else 0."""
    r, a = normalise_text(reply), normalise_text(answer)
    if not a:
        return 0.0
    if r == a:
        return 1.0
    if _NUMBER.fullmatch(a):
        nums = _NUMBER.findall(reply)
        if nums and nums[0] == a:
            return 1.0
        return partial if a in nums else 0.0
    if r.startswith(a + " ") or (r.startswith(a) and not a.isascii()):  # CJK has no word breaks
        return 1.0
    if f" {a} " in f" {r} " or (not a.isascii() and a in r):
        return partial
    return 0.0


class AnswerMatch:
    def __init__(self, cfg: AnswerReward):
        self.cfg = cfg

    def __call__(self, x: RewardInputs) -> list[float]:
        return [self.cfg.missing if a is None else answer_score(c, str(a), self.cfg.partial)
                for c, a in zip(x.completions, x.answers or [None] * len(x))]


class FormatMatch:
    def __init__(self, cfg: FormatReward):
        self.regex = re.compile(cfg.pattern, re.DOTALL)
        self.full = cfg.mode == "fullmatch"

    def __call__(self, x: RewardInputs) -> list[float]:
        find = self.regex.fullmatch if self.full else self.regex.search
        return [1.0 if find(c.strip()) else 0.0 for c in x.completions]


class LengthTarget:
    """1 inside [min_chars, max_chars], falling linearly by 1 per `tolerance` characters outside, floor −1."""

    def __init__(self, cfg: LengthReward):
        self.cfg = cfg

    def __call__(self, x: RewardInputs) -> list[float]:
        c = self.cfg
        out = []
        for text in x.completions:
            n = len(text.strip())
            dist = max(c.min_chars - n, n - c.max_chars, 0)
            out.append(max(-1.0, 1.0 - 2.0 * dist / c.tolerance) if dist else 1.0)
        return out


def repeated_fraction(ids: list[int], n: int) -> float:
    """Share of the n-grams of `ids` that repeat an earlier one (0 = no repetition, → 1 = a loop)."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


class RepetitionPenalty:
    """−(repeated n-gram fraction) of the completion's tokens, in [−1, 0] (MiniMind v3 has a 3-gram penalty)."""

    def __init__(self, cfg: RepetitionReward):
        self.n = cfg.n

    def __call__(self, x: RewardInputs) -> list[float]:
        return [-repeated_fraction(list(ids), self.n) for ids in x.completion_ids]


# ---- model rewards --------------------------------------------------------------------------------------------

class TrainedRewardModel:
    """A reward model from `minimind train rm`, scored on the prompt conversation + the reply rendered with its
    own tokenizer's chat template; no_grad, in `dtype` (the run's training dtype)."""

    def __init__(self, cfg: RewardModelReward, device, dtype=None):
        from core.model import io
        from core.rl.value import ScalarHeadModel

        self.cfg, self.device = cfg, device
        self.model = ScalarHeadModel.load(cfg.path, device)
        if dtype is not None:
            self.model.to(dtype)
        self.model.requires_grad_(False)
        self.tokenizer = io.load_tokenizer(io.resolve_checkpoint(cfg.path))
        self.max_len = self.model.config.max_position_embeddings

    @torch.no_grad()
    def __call__(self, x: RewardInputs) -> list[float]:
        from core.data.batching import pad_sequences

        seqs = []
        for msgs, reply in zip(x.messages, x.completions):
            conv = list(msgs) + [{"role": "assistant", "content": reply}]
            seqs.append(list(self.tokenizer.encode(self.tokenizer.apply_chat_template(conv)))[-self.max_len:])
        ids = pad_sequences(seqs, self.tokenizer.pad_id).to(self.device)
        mask = pad_sequences([[1] * len(s) for s in seqs], 0).to(self.device)
        scores = self.model.score(ids, mask).float().clamp(-self.cfg.clip, self.cfg.clip)
        return scores.cpu().tolist()


class HFClassifier:
    """A local transformers sequence-classification folder (local_files_only: never downloads)."""

    def __init__(self, cfg: HFClassifierReward, device):
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError:
            raise ValueError(f"reward source hf_classifier ({cfg.path}): the `transformers` package is not "
                             "installed; `pip install transformers` or remove this source") from None
        self.cfg, self.device = cfg, device
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.path, local_files_only=True)
        self.model = AutoModelForSequenceClassification.from_pretrained(cfg.path, local_files_only=True)
        self.model.to(device).eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, x: RewardInputs) -> list[float]:
        texts = [" ".join(m["content"] for m in msgs if m["role"] == "user") for msgs in x.messages] \
            if x.messages else [""] * len(x)
        enc = self.tokenizer(texts, x.completions, padding=True, truncation=True, return_tensors="pt").to(self.device)
        logits = self.model(**enc).logits.float()
        return logits[:, self.cfg.label].clamp(-self.cfg.clip, self.cfg.clip).cpu().tolist()


# ---- combination ----------------------------------------------------------------------------------------------

def build_source(cfg, device="cpu", dtype=None):
    if isinstance(cfg, AnswerReward):
        return AnswerMatch(cfg)
    if isinstance(cfg, FormatReward):
        return FormatMatch(cfg)
    if isinstance(cfg, LengthReward):
        return LengthTarget(cfg)
    if isinstance(cfg, RepetitionReward):
        return RepetitionPenalty(cfg)
    if isinstance(cfg, RewardModelReward):
        return TrainedRewardModel(cfg, device, dtype)
    if isinstance(cfg, HFClassifierReward):
        return HFClassifier(cfg, device)
    raise ValueError(f"unknown reward source {cfg!r}")


class RewardCombiner:
    """total = Σ weight·score over the configured sources; `breakdown` holds each source's raw scores."""

    def __init__(self, cfg: RewardConfig, device="cpu", dtype=None):
        self.items = [(s.key(), s.weight, build_source(s, device, dtype)) for s in cfg.sources]

    def __call__(self, x: RewardInputs) -> tuple[torch.Tensor, dict[str, list[float]]]:
        breakdown = {}
        total = torch.zeros(len(x))
        for key, weight, source in self.items:
            scores = [float(v) for v in source(x)]
            if len(scores) != len(x):
                raise RuntimeError(f"reward source {key} returned {len(scores)} scores for {len(x)} samples")
            breakdown[key] = scores
            total += weight * torch.tensor(scores)
        return total, breakdown
