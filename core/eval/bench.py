"""Multiple-choice benchmarks scored by log-likelihood (`minimind eval bench`), as lm-evaluation-harness does.

For each item and each option, the score is log P(option | few-shot examples + prompt), summed over the
option's tokens. `acc` counts items whose highest-scoring option is the gold one; `acc_norm` divides each score
by the option's length in UTF-8 bytes first (lm-eval's acc_norm, which uses characters; bytes treat Chinese and
English alike), so long options are not penalised for having more tokens. Each comes with a 95 % Wilson score
interval (Wilson 1927; better than the normal approximation at the small n of built-in sets).

Targets (anything with `loglikelihood(pairs) -> [(logp, n_tokens)]`, or a core.infer Backend):
  TorchScorer     a checkpoint's model, options scored in right-padded batches (one forward per batch)
  BackendScorer   any Backend's `score(ids)`, e.g. a GGUF through llama.cpp's logits
  EndpointScorer  an OpenAI-compatible /v1/completions that echoes prompt log-probs (echo, logprobs,
                  max_tokens 0: what lm-eval's local-completions sends)

    from core.eval.bench import load_task, score_task
    from core.infer.backend import open_backend
    with open_backend("runs/sft") as llm:
        result = score_task(llm, load_task("demo-facts"), k_shot=0)
    result["summary"]["acc"], result["summary"]["acc_ci95"], result["items"][0]["scores"]
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from core.eval.tasks import BUILTIN, FORMATS, Item, Task, load_task

__all__ = ["load_task", "score_task", "wilson_interval", "TorchScorer", "BackendScorer", "EndpointScorer",
           "scorer_for", "Task", "Item", "BUILTIN", "FORMATS"]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion correct/n (E. B. Wilson, JASA 22, 1927)."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# ---- targets --------------------------------------------------------------------------------------------------

class _TokenScorer:
    """Shared by the token-level targets: split a (context, continuation) pair into ids the way lm-eval does
    (encode the whole text, the continuation is what follows the context's own ids), cut from the left to fit."""

    max_length = 2048
    tokens_scored = 0  # tokens put through the model so far (tokens/s)

    def tokenize(self, text: str) -> list[int]:
        raise NotImplementedError

    def _encode(self, context: str, continuation: str) -> tuple[list[int], int]:
        whole = self.tokenize(context + continuation)
        n_context = len(self.tokenize(context))
        n_cont = max(1, len(whole) - n_context)
        ids = whole[-self.max_length:]
        return ids, min(n_cont, len(ids) - 1)

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        requests = [self._encode(c, x) for c, x in pairs]
        self.tokens_scored += sum(len(ids) for ids, _ in requests)
        return [(lp, n) for lp, (_, n) in zip(self._score(requests), requests)]

    def _score(self, requests: list[tuple[list[int], int]]) -> list[float]:
        raise NotImplementedError


class TorchScorer(_TokenScorer):
    """A torch model + tokenizer. Requests are sorted by length and run `batch_size` at a time, right-padded
    (a causal model's earlier positions never see the padding, so no mask is needed)."""

    def __init__(self, model, tokenizer, device="cpu", batch_size: int = 16):
        self.model, self.tokenizer, self.device, self.batch_size = model, tokenizer, device, max(1, batch_size)
        self.max_length = model.config.max_position_embeddings

    @classmethod
    def from_backend(cls, backend, batch_size: int = 16) -> "TorchScorer":
        return cls(backend.model, backend.tokenizer, backend.device, batch_size)

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def _score(self, requests):
        import torch

        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
        out = [0.0] * len(requests)
        was_training = self.model.training
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                width = len(requests[batch[0]][0])
                x = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids = requests[i][0]
                    x[row, :len(ids)] = torch.tensor(ids)
                logits = self.model(x.to(self.device)).logits  # (B, T, V)
                for row, i in enumerate(batch):
                    ids, n_cont = requests[i]
                    first = len(ids) - n_cont  # position of the continuation's first token
                    logp = logits[row, first - 1:len(ids) - 1].float().log_softmax(-1)
                    target = x[row, first:len(ids), None].to(logp.device)
                    out[i] = float(logp.gather(1, target).sum())
        self.model.train(was_training)
        return out


class BackendScorer(_TokenScorer):
    """Any core.infer Backend through `score(ids)`, one sequence at a time in the order given (llama.cpp: one
    evaluation per option, from where it differs from the previous one: an item's question is evaluated once)."""

    def __init__(self, backend):
        self.backend = backend
        self.max_length = backend.max_context

    def tokenize(self, text: str) -> list[int]:
        return self.backend.tokenize(text)

    def _score(self, requests):
        return [sum(self.backend.score(ids)[len(ids) - 1 - n:]) for ids, n in requests]


class EndpointScorer:
    """An OpenAI-compatible server: /v1/completions with echo, logprobs and max_tokens 0 returns the prompt's
    token log-probs and their character offsets; the continuation's tokens are those at or after the context."""

    def __init__(self, base_url: str, model: str | None = None, api_key: str = "none", batch_size: int = 8):
        """`model`: the name sent with each request; None asks the server (GET /v1/models) for its first."""
        from openai import OpenAI

        self.client, self.batch_size = OpenAI(base_url=base_url, api_key=api_key), batch_size
        self.model = model or self.client.models.list().data[0].id
        self.name = self.model
        self.tokens_scored = 0

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[tuple[float, int]]:
        out = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            reply = self.client.completions.create(model=self.model, prompt=[c + x for c, x in chunk], echo=True,
                                                   logprobs=1, max_tokens=0, temperature=0.0)
            for choice, (context, _) in zip(sorted(reply.choices, key=lambda c: c.index), chunk):
                lp = choice.logprobs
                picked = [v for v, off in zip(lp.token_logprobs, lp.text_offset) if off >= len(context)]
                if not picked or any(v is None for v in picked):
                    raise RuntimeError(f"{self.client.base_url}: the server returned no log-probs for the "
                                       "continuation; it must support echo + logprobs + max_tokens 0")
                self.tokens_scored += len(lp.token_logprobs)
                out.append((float(sum(picked)), len(picked)))
        return out


def scorer_for(target, batch_size: int = 16):
    """A scorer for `target`: one already (has `loglikelihood`), a TorchBackend (batched), or another Backend."""
    if hasattr(target, "loglikelihood"):
        return target
    if hasattr(target, "model") and hasattr(target, "tokenizer"):
        return TorchScorer.from_backend(target, batch_size)
    return BackendScorer(target)


# ---- scoring --------------------------------------------------------------------------------------------------

def _item_result(item: Item, scores: list[float]) -> dict:
    norm = [s / max(1, len(c.encode("utf-8"))) for s, c in zip(scores, item.options)]
    chosen, chosen_norm = max(range(len(scores)), key=scores.__getitem__), max(range(len(norm)), key=norm.__getitem__)
    return {"id": item.id, "question": item.question, "choices": item.choices, "gold": item.gold,
            "scores": [round(s, 4) for s in scores], "scores_norm": [round(s, 5) for s in norm],
            "chosen": chosen, "chosen_norm": chosen_norm, "correct": chosen == item.gold,
            "correct_norm": chosen_norm == item.gold}


def summarize(items: list[dict], seconds: float, tokens: int, settings: dict) -> dict:
    n = len(items)
    acc, acc_norm = sum(r["correct"] for r in items), sum(r["correct_norm"] for r in items)
    return {"acc": acc / n if n else 0.0, "acc_ci95": list(wilson_interval(acc, n)),
            "acc_norm": acc_norm / n if n else 0.0, "acc_norm_ci95": list(wilson_interval(acc_norm, n)), "n": n,
            "chance": sum(1 / len(r["choices"]) for r in items) / n if n else 0.0,
            "seconds": round(seconds, 3), "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None, "settings": settings}


def score_task(target, task: Task, k_shot: int = 0, batch_size: int = 16, progress=None, cancelled=None,
               run: str | Path | None = None, ngram: int = 13, seed: int = 1234) -> dict:
    """Score every item of `task` on `target` (a Backend, or a scorer: TorchScorer, BackendScorer,
    EndpointScorer). `progress(done, total)` is called after each batch of items; `cancelled()` returning True
    stops at the next batch (the result then holds the items done and `"cancelled": True`). `run`: the training
    run whose data (lineage included) the contamination check reads; by default the target's own run when it is
    a checkpoint inside one.

    Returns {"task", "format", "model", "items": [{id, question, choices, gold, scores, scores_norm, chosen,
    chosen_norm, correct, correct_norm, contaminated}], "summary": {acc, acc_ci95, acc_norm, acc_norm_ci95, n,
    chance, seconds, tokens, tokens_per_s, settings; acc_clean and n_clean when checked}, "contamination": core.eval.contamination report or
    {"checked": False, "reason"}, "cancelled"}."""
    from core.eval.contamination import contamination_for

    scorer = scorer_for(target, batch_size)
    tokens_before = getattr(scorer, "tokens_scored", 0)
    started, results, stopped = time.perf_counter(), [], False
    per_batch = max(1, batch_size // 2)
    for start in range(0, len(task.items), per_batch):
        if cancelled is not None and cancelled():
            stopped = True
            break
        chunk = list(enumerate(task.items))[start:start + per_batch]
        pairs = [(task.fewshot_prefix(i, k_shot, seed) + item.prompt, option)
                 for i, item in chunk for option in item.options]
        scores = iter(lp for lp, _ in scorer.loglikelihood(pairs))
        results += [_item_result(item, [next(scores) for _ in item.options]) for _, item in chunk]
        if progress is not None:
            progress(len(results), len(task.items))
    seconds = time.perf_counter() - started
    settings = {"k_shot": k_shot, "batch_size": batch_size, "format": task.format, "seed": seed, "ngram": ngram,
                "scorer": type(scorer).__name__}
    report = contamination_for(task, run if run is not None else getattr(target, "path", None), ngram)
    flags = report.pop("item_flags", None) or [None] * len(task.items)
    for r, flag in zip(results, flags):
        r["contaminated"] = flag
    summary = summarize(results, seconds, getattr(scorer, "tokens_scored", 0) - tokens_before, settings)
    clean = [r for r in results if r["contaminated"] is False]
    if report.get("checked"):  # accuracy on the items the check found clean (too-short items left out)
        summary.update(acc_clean=sum(r["correct"] for r in clean) / len(clean) if clean else None,
                       n_clean=len(clean))
    return {"task": task.name, "format": task.format, "path": task.path,
            "model": getattr(target, "name", type(target).__name__), "items": results, "summary": summary,
            "contamination": report, "cancelled": stopped}
