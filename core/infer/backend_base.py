"""The interface every inference backend implements (torch model, llama.cpp GGUF) and what they share.

A backend supplies tokenization, detokenization and a stepper (prefill, then one token at a time); the shared
behaviour here renders chats with OUR chat template and runs `decode_loop`, so sampling, incremental
detokenization and stop handling live in one place. `core.infer.backend` (TorchBackend, `open_backend`) and
`core.infer.llamacpp` both build on this module; it imports neither.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

from core.infer.answer_format import AnswerFormat
from core.infer.chat_output import ChatOutputParser, OutputDelta
from core.infer.constraint import GuidanceConstraint
from core.infer.generate import Usage, decode_loop
from core.infer.sampling import SamplingParams
from core.tokenizer.chat_template import CHAT_TEMPLATE, render

CONTROL_IDS = frozenset({0, 1, 2})  # <|endoftext|>, <|im_start|>, <|im_end|>: never shown as text


class Backend(ABC):
    """A loaded model that streams completions. Not thread-safe: one generation at a time per backend."""

    name: str = "model"
    eos_id: int = 2
    chat_template: str = CHAT_TEMPLATE

    def __init__(self):
        self.usage = Usage()              # token counts and timings of the latest call
        self.finish_reason: str | None = None  # "stop" | "length" after the latest call ran to its end

    # ---- what each backend provides -----------------------------------------------------------------
    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Ids of `text`, special tokens written in it kept atomic, no BOS added."""

    @abstractmethod
    def detokenize(self, ids: list[int]) -> str:
        """Text of `ids` with control tokens dropped."""

    @abstractmethod
    def _stepper(self): ...

    @property
    @abstractmethod
    def max_context(self) -> int:
        """Most tokens (prompt + completion) one sequence may hold."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    def score(self, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i = 1..len(ids)-1 (perplexity, evaluation)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score token sequences")

    def constraint(self, fmt: AnswerFormat, thinking: bool = False):
        """A fresh core.infer.constraint object that holds one answer to `fmt` (thinking: the prompt opened the
        reasoning block), from this backend's grammar engine: llguidance over its MiniMindTokenizer by default."""
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None:
            raise NotImplementedError(f"{type(self).__name__} cannot constrain its answers")
        return GuidanceConstraint(tokenizer, self.vocab_size, fmt, thinking)

    def close(self) -> None:
        """Free the model. Call before exit (llama.cpp otherwise raises from `Llama.__del__` at shutdown)."""

    # ---- shared behaviour ---------------------------------------------------------------------------
    def render_chat(self, messages: list[dict], tools: list[dict] | None = None, think: bool | None = None) -> str:
        """The prompt text for `messages` ({"role", "content"}, assistant `tool_calls`, `tool` results), ending
        with the assistant header. `tools`: OpenAI function descriptions, rendered into the system turn.
        `think`: open the reasoning block (True), close it (False), or leave it to the template (None; the
        template receives it as both `enable_thinking` and MiniMind-3's `open_thinking`). Both backends
        render this way: the GGUF has no tokenizer object, only the template string, and the tokenizer's
        `apply_chat_template` is this same `render` of the same template."""
        return render(self.chat_template, messages, add_generation_prompt=True, tools=tools or None,
                      enable_thinking=think, bos_token="<|im_start|>", eos_token="<|im_end|>")

    def chat_stream(self, messages: list[dict], sampling: SamplingParams | None = None,
                    tools: list[dict] | None = None, think: bool | None = None,
                    answer_format: AnswerFormat | None = None) -> Iterator[str]:
        """Raw text pieces of the answer (tags included)."""
        prompt, constraint = self.prepare_chat(messages, tools, think, answer_format)
        return self.stream_ids(self.tokenize(prompt), sampling, constraint)

    def chat_events(self, messages: list[dict], sampling: SamplingParams | None = None,
                    tools: list[dict] | None = None, think: bool | None = None,
                    answer_format: AnswerFormat | None = None) -> Iterator[OutputDelta]:
        """The answer split as it streams: reasoning and content deltas, complete tool calls
        (`core.infer.chat_output`). Closing the iterator stops generation. `answer_format`: see `prepare_chat`."""
        prompt, constraint = self.prepare_chat(messages, tools, think, answer_format)
        parser = ChatOutputParser.for_prompt(prompt)
        pieces = self.stream_ids(self.tokenize(prompt), sampling, constraint)
        try:
            for piece in pieces:
                yield from parser.feed(piece)
            yield from parser.finish()
        finally:
            pieces.close()

    def prepare_chat(self, messages: list[dict], tools: list[dict] | None = None, think: bool | None = None,
                     answer_format: AnswerFormat | None = None):
        """(the prompt, the constraint for its answer or None). With `answer_format` the answer is decoded under
        its grammar (core.infer.answer_format: tool_choice, response_format) and the prompt shows its tools
        (`tools` is then ignored); without it, `tools` are shown and the answer is free."""
        if answer_format is None:
            return self.render_chat(messages, tools, think), None
        prompt = self.render_chat(messages, answer_format.rendered_tools, think)
        if not answer_format.constrains:
            return prompt, None
        thinking = ChatOutputParser.for_prompt(prompt).state == "reasoning"
        return prompt, self.constraint(answer_format, thinking)

    def complete_stream(self, prompt: str, sampling: SamplingParams | None = None) -> Iterator[str]:
        return self.stream_ids(self.tokenize(prompt), sampling)

    def chat(self, messages: list[dict], sampling: SamplingParams | None = None) -> str:
        return "".join(self.chat_stream(messages, sampling))

    def complete(self, prompt: str, sampling: SamplingParams | None = None) -> str:
        return "".join(self.complete_stream(prompt, sampling))

    def stream_ids(self, prompt_ids: list[int], sampling: SamplingParams | None = None,
                   constraint=None) -> Iterator[str]:
        """Stream the completion of already-tokenized input; `usage`/`finish_reason` update as it runs."""
        self.usage, self.finish_reason = Usage(prompt_tokens=len(prompt_ids)), None

        def finished(stream):
            self.finish_reason = stream.finish_reason

        return decode_loop(self._stepper(), prompt_ids, sampling or SamplingParams(), self.detokenize,
                           eos_id=self.eos_id, vocab_size=self.vocab_size, max_positions=self.max_context,
                           stats=self.usage, on_finish=finished, constraint=constraint)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def model_name(path: Path) -> str:
    """A short display name: the GGUF file's stem, run/step-NNNNNN for a checkpoint, else the folder name."""
    path = path.resolve()
    if path.suffix == ".gguf":
        return path.stem
    if path.name.startswith("step-") and path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}/{path.name}"  # run/step-000500
    return path.name
