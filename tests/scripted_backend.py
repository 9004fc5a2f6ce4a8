"""TEST ONLY — `ScriptedReplayBackend`, a Backend whose "model" replays scripted answers. Not a model.

A tiny random-weight checkpoint cannot be made to call a tool or reason on cue, so tests of tool calls and
reasoning script the answer instead: each call to the backend replays the next scripted text token by token
(a one-hot logit row per step, whatever the sampling settings), through the real tokenizer, decode loop,
incremental detokenizer and output parser, and, in the server tests, the real engine and HTTP server, exactly
as a trained model's tokens would go. It records every prompt it was given, as text.

`EndlessBackend` writes one letter forever: a request to it ends only at its token budget or when it is
cancelled, so tests of cancellation and of a full queue do not depend on how fast anything runs.
"""
from __future__ import annotations

import torch

from core.infer.backend_base import Backend


class _Replay:
    def __init__(self, backend: "ScriptedReplayBackend", script: list[int]):
        self.backend, self.script = backend, script

    def prefill(self, ids: list[int]) -> torch.Tensor:
        self.backend.prompts.append(self.backend.tokenizer.decode(ids))
        return self.step(None)

    def step(self, _token) -> torch.Tensor:
        logits = torch.full((self.backend.vocab_size,), -1e4)
        logits[self.script.pop(0) if self.script else self.backend.eos_id] = 0.0
        return logits


class ScriptedReplayBackend(Backend):
    name = "scripted-replay"

    def __init__(self, tokenizer, replies, max_context: int = 4096):
        super().__init__()
        self.tokenizer, self.replies, self.prompts = tokenizer, list(replies), []
        self.chat_template = tokenizer.chat_template
        self._max_context = max_context

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @property
    def max_context(self) -> int:
        return self._max_context

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def _stepper(self):
        reply = self.replies.pop(0) if self.replies else ""
        return _Replay(self, self.tokenize(reply) + [self.eos_id])


class _Endless(_Replay):
    def step(self, _token) -> torch.Tensor:
        logits = torch.full((self.backend.vocab_size,), -1e4)
        logits[self.backend.letter] = 0.0
        return logits


class EndlessBackend(ScriptedReplayBackend):
    name = "endless"

    def __init__(self, tokenizer, max_context: int = 1_000_000):
        super().__init__(tokenizer, [], max_context)
        [self.letter] = tokenizer.encode("a")

    def _stepper(self):
        return _Endless(self, [])
