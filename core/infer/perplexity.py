"""Perplexity and bits per byte of a backend over texts.

perplexity    = exp(mean negative log-likelihood per predicted token)
bits per byte = total negative log-likelihood in bits / UTF-8 bytes of the predicted text

Perplexity depends on the tokenizer (a vocabulary with longer tokens predicts fewer, harder tokens); bits per
byte does not, so models with different tokenizers compare fairly on it (Gao et al. 2020, The Pile, §4; lm-eval's
`bits_per_byte`). Both are always reported together.
"""
from __future__ import annotations

import math


def perplexity(backend, texts: list[str], max_tokens: int = 512) -> dict:
    """{"perplexity", "bits_per_byte", "ppl_tokens", "ppl_bytes", "ppl_texts"}; each text is truncated to
    max_tokens (and the context).

    Tokens are pooled over texts (a long text weighs more), as in the usual corpus-level perplexity. The first
    token of each text has no context and is not predicted, so its bytes are left out of the byte count too.
    """
    total_nll, count, n_bytes = 0.0, 0, 0
    for text in texts:
        ids = backend.tokenize(text)[:max(2, min(max_tokens, backend.max_context))]
        if len(ids) < 2:
            continue
        logps = backend.score(ids)
        total_nll -= sum(logps)
        count += len(logps)
        n_bytes += len(backend.detokenize(ids).encode("utf-8")) - len(backend.detokenize(ids[:1]).encode("utf-8"))
    if not count:
        raise ValueError("no text has 2 or more tokens; nothing to measure")
    return {"perplexity": round(math.exp(total_nll / count), 4),
            "bits_per_byte": round(total_nll / math.log(2) / max(n_bytes, 1), 4),
            "ppl_tokens": count, "ppl_bytes": n_bytes, "ppl_texts": len(texts)}


def read_texts(path, limit: int | None = None) -> list[str]:
    """Held-out texts: a JSONL file ({"text": ...} per line; a bad line is a ValueError naming FILE:LINE:
    text) or plain text (.txt, one text per blank-line-separated paragraph)."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() == ".txt":
        paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        return paragraphs[:limit] if limit else paragraphs
    texts = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: (line): invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not (isinstance(row, dict) and isinstance(row.get("text"), str)):
                raise ValueError(f"{path}:{lineno}: text: expected a string field \"text\"")
            texts.append(row["text"])
            if limit and len(texts) >= limit:
                break
    return texts
