"""Perplexity of a backend over texts: exp(mean negative log-likelihood of every predicted token)."""
from __future__ import annotations

import math


def perplexity(backend, texts: list[str], max_tokens: int = 512) -> dict:
    """{"perplexity", "ppl_tokens", "ppl_texts"}; each text is truncated to max_tokens (and the context).

    Tokens are pooled over texts (a long text weighs more), as in the usual corpus-level perplexity.
    """
    total_nll, count = 0.0, 0
    for text in texts:
        ids = backend.tokenize(text)[:max(2, min(max_tokens, backend.max_context))]
        if len(ids) < 2:
            continue
        logps = backend.score(ids)
        total_nll -= sum(logps)
        count += len(logps)
    if not count:
        raise ValueError("no text has 2 or more tokens; nothing to measure")
    return {"perplexity": round(math.exp(total_nll / count), 4), "ppl_tokens": count, "ppl_texts": len(texts)}
