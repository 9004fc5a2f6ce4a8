"""Grammar-constrained decoding: which next tokens an `AnswerFormat` allows, from the engine made for each backend.

`decode_loop` and `generate_batch` sample every token through `core.infer.sampling`; a constraint only removes the
tokens its grammar forbids (their logits become -inf) before the draw, then is told which token was chosen:

    logits = constraint.mask(logits)      # (V,) -> (V,)
    constraint.accept(token)

Two engines, one per backend, each reading the grammar the same `AnswerFormat` writes for it:

- `GuidanceConstraint` (torch backend): llguidance's token-level matcher over the tokenizer's own tokenizer.json
  (byte-level BPE, the tool tags as single tokens). Building its token table takes milliseconds and is kept per
  tokenizer.
- `LlamaGrammarConstraint` (GGUF backend): llama.cpp's grammar sampler (GBNF, lazy when text may run before a
  call) on the GGUF's own vocabulary, applied to the logits our sampler reads.

A mask that would leave nothing allowed (a grammar the vocabulary cannot finish) allows the end of the turn instead
of sampling from an empty distribution.
"""
from __future__ import annotations

import ctypes
import weakref
from typing import Protocol

import llguidance
import numpy as np
import torch

from core.infer.answer_format import AnswerFormat

_BITS = torch.arange(32, dtype=torch.int32)


class Constraint(Protocol):
    def mask(self, logits: torch.Tensor) -> torch.Tensor: ...

    def accept(self, token: int) -> None: ...


def _keep(logits: torch.Tensor, allowed: torch.Tensor, eos_id: int) -> torch.Tensor:
    if not bool(allowed.any()):
        allowed = torch.zeros_like(allowed)
        allowed[eos_id] = True
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


# ---- torch backend: llguidance --------------------------------------------------------------------------------
_LL_TOKENIZERS: dict[tuple[str, int], object] = {}


def guidance_tokenizer(tokenizer, vocab_size: int):
    """llguidance's token table for a MiniMindTokenizer (built once per tokenizer and model vocabulary size)."""
    key = (tokenizer.hash, vocab_size)
    if key not in _LL_TOKENIZERS:
        _LL_TOKENIZERS[key] = llguidance.LLTokenizer(tokenizer.backend.to_str(), n_vocab=vocab_size,
                                                     eos_token=tokenizer.eos_id)
    return _LL_TOKENIZERS[key]


class GuidanceConstraint:
    """An llguidance matcher for one answer."""

    def __init__(self, tokenizer, vocab_size: int, fmt: AnswerFormat, thinking: bool = False):
        self.vocab_size, self.eos_id = vocab_size, tokenizer.eos_id
        grammar = llguidance.LLMatcher.grammar_from_lark(fmt.lark(thinking))
        self.matcher = llguidance.LLMatcher(guidance_tokenizer(tokenizer, vocab_size), grammar, log_level=0)
        if self.matcher.is_error():
            raise ValueError(f"the tools' or response format's schema cannot be enforced: {self.matcher.get_error()}")
        self._bitmask = torch.full(((vocab_size + 31) // 32,), -1, dtype=torch.int32)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        self.matcher.unsafe_compute_mask_ptr(self._bitmask.data_ptr(), self._bitmask.numel() * 4)
        if self.matcher.is_error():
            raise RuntimeError(f"the answer's grammar failed: {self.matcher.get_error()}")
        allowed = ((self._bitmask[:, None] >> _BITS) & 1).flatten()[:logits.shape[-1]].bool()
        return _keep(logits, allowed, self.eos_id)

    def accept(self, token: int) -> None:
        if not self.matcher.consume_token(int(token)) and self.matcher.is_error():
            raise RuntimeError(f"token {token} broke the answer's grammar: {self.matcher.get_error()}")


# ---- GGUF backend: llama.cpp's grammar sampler ----------------------------------------------------------------
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


class LlamaGrammarConstraint:
    """A llama.cpp grammar sampler for one answer, on `llm`'s vocabulary (a llama_cpp.Llama)."""

    def __init__(self, llm, fmt: AnswerFormat, thinking: bool = False):
        import llama_cpp as lc

        self._lc, self.eos_id = lc, int(lc.llama_vocab_eos(llm._model.vocab))
        grammar, triggers = fmt.gbnf(thinking)
        vocab = llm._model.vocab
        if triggers:
            ids = [llm.tokenize(t.encode(), add_bos=False, special=True) for t in triggers]
            if any(len(i) != 1 for i in ids):
                raise ValueError(f"this model's vocabulary has no single token for {triggers}; constrained tool "
                                 "calls need the tool tags as tokens (a tokenizer trained here has them)")
            arr = (lc.llama_token * len(ids))(*[i[0] for i in ids])
            self._sampler = lc.llama_sampler_init_grammar_lazy_patterns(vocab, grammar.encode(), b"root", None, 0,
                                                                        arr, len(ids))
        else:
            self._sampler = lc.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self._sampler:
            raise ValueError("llama.cpp could not parse the grammar of the tools' or response format's schema")
        weakref.finalize(self, lc.llama_sampler_free, self._sampler)  # also at exit, before llama_cpp unloads
        self._data = np.zeros(llm.n_vocab(), dtype=_TOKEN_DATA)

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        data, lc = self._data, self._lc
        data["id"] = np.arange(len(data), dtype=np.int32)
        data["logit"] = 0.0
        arr = lc.llama_token_data_array(data=data.ctypes.data_as(lc.llama_token_data_p), size=len(data),
                                        selected=-1, sorted=False)
        lc.llama_sampler_apply(self._sampler, ctypes.byref(arr))
        allowed = torch.zeros(logits.shape[-1], dtype=torch.bool)
        allowed[torch.from_numpy(data["id"][np.isfinite(data["logit"])].astype(np.int64))] = True
        return _keep(logits, allowed, self.eos_id)

    def accept(self, token: int) -> None:
        self._lc.llama_sampler_accept(self._sampler, int(token))
