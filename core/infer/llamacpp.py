"""The llama.cpp backend: a GGUF file run by llama-cpp-python, sampled by our own code.

llama.cpp only evaluates (prompt in one batch, then one token at a time on its KV cache); the next token is
chosen from its logits by `core.infer.sampling`, exactly as for the torch backend, so both backends share
temperature/top-k/top-p/repetition-penalty semantics, seeds and stop handling.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from core.llama_load import load_llama
from core.infer.backend_base import CONTROL_IDS, Backend, model_name
from core.infer.constraint import LlamaGrammarConstraint
from core.tokenizer.chat_template import CHAT_TEMPLATE

GGML_TYPE_F32 = 0  # llama.cpp's KV cache is f16 by default (~1e-2 logit noise); f32 keeps parity at ~1e-4


def last_logits(llm) -> np.ndarray:
    """Logits of the last evaluated token, copied. With logits_all=False llama-cpp-python 0.3 no longer copies
    them into `llm.scores` (its sampler reads them in C), so read llama.cpp's buffer directly."""
    from llama_cpp import llama_get_logits_ith

    ptr = llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)).astype(np.float32, copy=True)


def eval_all_logits(llm, tokens: list[int], n_past: int) -> np.ndarray:
    """Evaluate `tokens` at positions n_past.. on `llm`'s KV cache (cells from n_past on are dropped first) and
    return every position's logits, (len(tokens), vocab) float32. `Llama.eval` returns only the last row unless
    the whole context was made with logits_all, so the batch is built here with each position's logits flag on;
    `input_ids`/`n_tokens` are kept as `Llama.eval` keeps them, so generation after scoring starts cleanly."""
    n_vocab = llm.n_vocab()
    llm._ctx.kv_cache_seq_rm(-1, n_past, -1)
    llm.n_tokens = n_past
    rows = []
    for i in range(0, len(tokens), llm.n_batch):  # llama_decode takes at most n_batch tokens per call
        chunk = tokens[i:i + llm.n_batch]
        llm._batch.set_batch(batch=chunk, n_past=n_past + i, logits_all=True)
        llm._ctx.decode(llm._batch)
        rows.append(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(chunk), n_vocab)).copy())
        llm.input_ids[n_past + i:n_past + i + len(chunk)] = chunk
        llm.n_tokens = n_past + i + len(chunk)
    return np.concatenate(rows) if rows else np.zeros((0, n_vocab), np.float32)


def log_softmax_at(logits: np.ndarray, targets: list[int]) -> list[float]:
    """log_softmax(logits[i])[targets[i]] for each row: exp in float32 as torch's log_softmax computes it, the
    normaliser summed in float64 (a float64 copy of every row cost a fifth of a tiny model's scoring time)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1, dtype=np.float64))
    return (shifted[np.arange(len(targets)), targets] - lse).tolist()


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaCppStepper:
    def __init__(self, llm):
        self.llm = llm

    def _last_logits(self) -> torch.Tensor:
        return torch.from_numpy(last_logits(self.llm))

    def prefill(self, ids: list[int]) -> torch.Tensor:
        if not ids:
            raise ValueError("cannot generate from an empty prompt; give at least one token")
        self.llm.reset()  # rewinds n_tokens; eval() drops the stale KV cells beyond it
        self.llm.eval(ids)
        return self._last_logits()

    def step(self, token_id: int) -> torch.Tensor:
        self.llm.eval([token_id])
        return self._last_logits()


class LlamaCppBackend(Backend):
    """A GGUF model loaded with llama-cpp-python (CPU; `n_gpu_layers` for a GPU build)."""

    def __init__(self, gguf_path: str | Path, n_ctx: int = 4096, n_threads: int | None = None,
                 f32_kv_cache: bool = True, n_gpu_layers: int = 0, **llama_options):
        super().__init__()
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("the llama.cpp backend needs llama-cpp-python: pip install llama-cpp-python "
                               "(builds from source in ~3 min)") from exc
        self.path = Path(gguf_path)
        threads = n_threads or max(1, os.cpu_count() or 1)
        # n_threads_batch (prompt evaluation) defaults to every core whatever n_threads says: keep them equal.
        options = dict(n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_gpu_layers=n_gpu_layers,
                       logits_all=False, verbose=False)
        if f32_kv_cache:
            options.update(type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
        options.update(llama_options)
        try:
            self.llm = load_llama(model_path=str(self.path), **options)
        except ValueError as exc:  # verbose=False hides llama.cpp's reason (docs/field-notes.md)
            raise RuntimeError(f"{self.path}: llama.cpp could not load this GGUF ({exc}); re-export it with "
                               "`minimind export gguf`, or load it with verbose=True to see why") from exc
        meta = self.llm.metadata or {}
        self.chat_template = meta.get("tokenizer.chat_template") or CHAT_TEMPLATE
        self.eos_id = int(meta.get("tokenizer.ggml.eos_token_id", 2))
        self.name = model_name(self.path)
        self._pieces: dict[int, bytes] = {}
        self._scored: tuple[list[int], list[float]] = ([], [])  # the last `score` call, for its shared prefix

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def detokenize(self, ids: list[int]) -> str:
        # Control ids dropped + special pieces rendered = the torch tokenizer's skip_special_tokens (keeps
        # <think>). Not `Llama.detokenize`: llama-cpp-python 0.3 reads each piece into a 32-byte buffer and
        # silently drops longer tokens (BPE merges of box-drawing runs reach 36 bytes; measured).
        return b"".join(self._piece(i) for i in ids if i not in CONTROL_IDS).decode("utf-8", errors="replace")

    def _piece(self, token_id: int) -> bytes:
        piece = self._pieces.get(token_id)
        if piece is None:
            import ctypes

            from llama_cpp import llama_token_to_piece

            size = 64
            while True:
                buf = (ctypes.c_char * size)()
                n = llama_token_to_piece(self.llm._model.vocab, token_id, buf, size, 0, True)
                if n >= 0:
                    break
                size = -n  # llama.cpp returns -(bytes needed) when the buffer is too small
            piece = self._pieces[token_id] = bytes(buf[:n])
        return piece

    def _stepper(self):
        if self.llm is None:
            raise RuntimeError(f"{self.name}: backend is closed")
        return LlamaCppStepper(self.llm)

    def constraint(self, fmt, thinking: bool = False):
        return LlamaGrammarConstraint(self.llm, fmt, thinking)

    @property
    def max_context(self) -> int:
        return self.llm.n_ctx()

    @property
    def vocab_size(self) -> int:
        return self.llm.n_vocab()

    def score(self, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i = 1..len(ids)-1, from one evaluation of the tokens not already scored.

        The positions are decoded in one batch that asks llama.cpp for every position's logits (the context itself
        keeps logits_all=False: that flag allocates an n_ctx x vocab array and requests all logits during every
        generation's prefill as well). A call that
        repeats the start of the previous one, as the options of one multiple-choice item repeat its question,
        keeps that part of the KV cache and those log-probs and evaluates only from where the two differ."""
        if self.llm is None:
            raise RuntimeError(f"{self.name}: backend is closed")
        ids = [int(i) for i in ids]
        if len(ids) > self.max_context:
            raise ValueError(f"{self.name}: {len(ids)} tokens do not fit llama.cpp's context of "
                             f"{self.max_context}; cut them or open the GGUF with a larger n_ctx")
        inputs = ids[:-1]  # the last token predicts nothing that is scored
        prev_ids, prev_logps = self._scored
        start = min(_common_prefix(inputs, self.llm.input_ids[:self.llm.n_tokens].tolist()),
                    max(0, _common_prefix(ids, prev_ids) - 1))  # KV cells and log-probs both still valid
        logits = eval_all_logits(self.llm, inputs[start:], start)
        logps = prev_logps[:start] + log_softmax_at(logits, ids[start + 1:])
        self._scored = (ids, logps)
        return logps

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None
