"""Token log-probabilities for `/v1/completions` (`logprobs`, `echo`), in OpenAI's legacy completions shape.

    {"tokens": [...], "token_logprobs": [null, -2.1, ...], "top_logprobs": [null, {"tok": -0.3, ...}, ...],
     "text_offset": [0, 3, ...]}

Log-probs are those of the model's own distribution (log-softmax of the logits, no temperature or top-p), as
lm-evaluation-harness and OpenAI's API report them. A sequence's first token has no context, so when the echoed
prompt is scored from its start its first entries are null. `top_logprobs` holds the `n` likeliest tokens plus
the token actually there (OpenAI: "up to logprobs+1 elements"). Token strings come from the same incremental
detokenizer as streaming (core.infer.text), so the tokens of a choice join to its text and a character split
over several byte-level tokens is carried by the last of them (the others are ""; as `top_logprobs` keys they
are `token_id:N`).

Scoring runs where the model lives: the whole sequence in one forward pass, on torch as on llama.cpp (one batch
that requests every position's logits, `core.infer.llamacpp.eval_all_logits`, as `LlamaCppBackend.score` uses).
"""
from __future__ import annotations

import numpy as np

from core.infer.text import REPLACEMENT, IncrementalDecoder

MAX_LOGPROBS = 20  # OpenAI allows 5; vLLM 20


def logprob_rows(backend, ids: list[int], top_n: int) -> tuple[list[float], list[list[tuple[int, float]]]]:
    """For each position i = 1..len(ids)-1: log p(ids[i] | ids[:i]) and the `top_n` likeliest (id, log p).
    Raises NotImplementedError for a backend that exposes no logits."""
    if getattr(backend, "model", None) is not None:
        return _torch_rows(backend.model, ids, top_n)
    if getattr(backend, "llm", None) is not None:
        return _llama_rows(backend, ids, top_n)
    raise NotImplementedError(f"{type(backend).__name__} cannot report log-probabilities")


def _torch_rows(model, ids: list[int], top_n: int):
    import torch

    with torch.inference_mode():
        x = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
        logp = model(x).logits[0, :-1].float().log_softmax(-1)  # (T-1, V)
        chosen = logp.gather(1, x[0, 1:, None]).squeeze(1).tolist()
        if top_n <= 0:
            return chosen, [[] for _ in chosen]
        values, indices = logp.topk(min(top_n, logp.shape[-1]), dim=-1)
        return chosen, [list(zip(i, v)) for i, v in zip(indices.tolist(), values.tolist())]


def _llama_rows(backend, ids: list[int], top_n: int):
    from core.infer.llamacpp import eval_all_logits

    rows = eval_all_logits(backend.llm, ids[:-1], 0).astype(np.float64)  # (T-1, V), one evaluation
    rows -= rows.max(axis=1, keepdims=True)
    rows -= np.log(np.exp(rows).sum(axis=1, keepdims=True))
    chosen = rows[np.arange(len(rows)), ids[1:]].tolist()
    if top_n <= 0:
        return chosen, [[] for _ in chosen]
    best = np.argsort(-rows, axis=1, kind="stable")[:, :top_n]
    return chosen, [[(int(j), float(row[j])) for j in order] for row, order in zip(rows, best)]


def token_pieces(detokenize, ids: list[int]) -> list[str]:
    """The text each token adds, in order; the pieces join to the decoded text."""
    decoder = IncrementalDecoder(detokenize)
    pieces = [decoder.push(t) for t in ids]
    if pieces:
        pieces[-1] += decoder.flush()
    return pieces


def token_key(backend, token_id: int) -> str:
    """A token's text as a `top_logprobs` key; a token that is part of a character (its text alone is not valid
    UTF-8) is `token_id:N`, so two such tokens never share a key."""
    text = backend.detokenize([token_id])
    return f"token_id:{token_id}" if REPLACEMENT in text or not text else text


def logprobs_body(backend, ids: list[int], start: int, top_n: int, offset: int = 0) -> dict:
    """OpenAI's `logprobs` object for tokens ids[start:] scored in the context of ids[:start]; `offset` is the
    text position of ids[start] (the prompt's length when the prompt is not echoed)."""
    chosen, tops = logprob_rows(backend, ids, top_n) if len(ids) > 1 else ([], [])
    pieces = token_pieces(backend.detokenize, ids)
    body = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    position = offset
    for i in range(start, len(ids)):
        body["tokens"].append(pieces[i])
        body["text_offset"].append(position)
        position += len(pieces[i])
        if i == 0:
            body["token_logprobs"].append(None)
            body["top_logprobs"].append(None)
            continue
        top = {token_key(backend, j): lp for j, lp in tops[i - 1]}
        top.setdefault(token_key(backend, ids[i]), chosen[i - 1])
        body["token_logprobs"].append(chosen[i - 1])
        body["top_logprobs"].append(top)
    return body
