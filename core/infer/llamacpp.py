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

from core.infer.backend import CONTROL_IDS, Backend, _model_name
from core.tokenizer.chat_template import CHAT_TEMPLATE

GGML_TYPE_F32 = 0  # llama.cpp's KV cache is f16 by default (~1e-2 logit noise); f32 keeps parity at ~1e-4


class LlamaCppStepper:
    def __init__(self, llm):
        self.llm = llm

    def _last_logits(self) -> torch.Tensor:
        row = self.llm.scores[self.llm.n_tokens - 1]
        return torch.from_numpy(np.array(row, dtype=np.float32, copy=True))

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
            from llama_cpp import Llama
        except ImportError as exc:
            raise RuntimeError("the llama.cpp backend needs llama-cpp-python: pip install llama-cpp-python "
                               "(builds from source in ~3 min)") from exc
        self.path = Path(gguf_path)
        options = dict(n_ctx=n_ctx, n_threads=n_threads or max(1, (os.cpu_count() or 2)),
                       n_gpu_layers=n_gpu_layers, logits_all=False, verbose=False)
        if f32_kv_cache:
            options.update(type_k=GGML_TYPE_F32, type_v=GGML_TYPE_F32)
        options.update(llama_options)
        try:
            self.llm = Llama(model_path=str(self.path), **options)
        except ValueError as exc:  # verbose=False hides llama.cpp's reason (docs/field-notes.md)
            raise RuntimeError(f"{self.path}: llama.cpp could not load this GGUF ({exc}); re-export it with "
                               "`minimind export gguf`, or load it with verbose=True to see why") from exc
        meta = self.llm.metadata or {}
        self.chat_template = meta.get("tokenizer.chat_template") or CHAT_TEMPLATE
        self.eos_id = int(meta.get("tokenizer.ggml.eos_token_id", 2))
        self.name = _model_name(self.path)

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def detokenize(self, ids: list[int]) -> str:
        # special=True + dropping control ids = the torch tokenizer's skip_special_tokens (keeps <think>).
        data = self.llm.detokenize([i for i in ids if i not in CONTROL_IDS], special=True)
        return data.decode("utf-8", errors="replace")

    def _stepper(self):
        if self.llm is None:
            raise RuntimeError(f"{self.name}: backend is closed")
        return LlamaCppStepper(self.llm)

    @property
    def max_context(self) -> int:
        return self.llm.n_ctx()

    @property
    def vocab_size(self) -> int:
        return self.llm.n_vocab()

    def score(self, ids: list[int]) -> list[float]:
        """Token by token: this context keeps only the last row of logits (logits_all=False keeps decoding
        memory small), so each position is evaluated on its own step of the KV cache."""
        out = []
        self.llm.reset()
        for i, tok in enumerate(ids[:-1]):
            self.llm.eval([tok])
            row = np.asarray(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float64)
            top = row.max()
            out.append(float(row[ids[i + 1]] - top - np.log(np.exp(row - top).sum())))
        return out

    def close(self) -> None:
        if getattr(self, "llm", None) is not None:
            self.llm.close()
            self.llm = None
