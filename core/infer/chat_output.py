"""Model output -> reasoning, content and tool calls, incrementally (MiniMind-3 / Qwen3 tags).

The model writes `<think>…</think>` around its reasoning and `<tool_call>{"name": …, "arguments": {…}}</tool_call>`
for each call. `ChatOutputParser` splits a stream of text pieces as it arrives: reasoning deltas, content deltas
and complete tool calls. Text that could still be the start of a tag is held back, as is whitespace that could
still turn out to sit next to a tag (the template writes a newline on each side of every tag; it is not part of
what the model said). Without any tag, the content is the raw text unchanged.

One parser for every consumer (both backends through `Backend.chat_events`, the server, `minimind chat`, the
studio), and the whole-text form is the streaming form fed at once (`parse_chat_output`), so a streamed answer
and a non-streamed one can never disagree.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Literal

from core.infer.text import held_suffix

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"


@dataclass
class ToolCall:
    """One call as OpenAI returns it: `arguments` is a JSON string (the object the model wrote)."""
    name: str
    arguments: str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def arguments_dict(self) -> dict:
        """The arguments as an object ({} when the model wrote something else)."""
        try:
            value = json.loads(self.arguments)
        except (ValueError, RecursionError):  # ValueError: also an integer past int_max_str_digits
            return {}
        return value if isinstance(value, dict) else {}

    def openai(self) -> dict:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class OutputDelta:
    kind: Literal["reasoning", "content", "tool_call"]
    text: str = ""
    call: ToolCall | None = None


@dataclass
class ChatOutput:
    """A whole answer, split."""
    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    def add(self, delta: OutputDelta) -> None:
        if delta.kind == "tool_call":
            self.tool_calls.append(delta.call)
        elif delta.kind == "reasoning":
            self.reasoning += delta.text
        else:
            self.content += delta.text

    def assistant_message(self) -> dict:
        """The turn to append to the conversation (the chat template renders `tool_calls` and reasoning back)."""
        message = {"role": "assistant", "content": self.content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = [c.openai() for c in self.tool_calls]
        return message


def parse_tool_call(body: str) -> ToolCall | None:
    """The JSON between <tool_call> tags -> a ToolCall; None when it is not {"name": str, "arguments": ...}.

    Any JSON the model writes is caught: a syntax error, nesting past the recursion limit, and an integer of more
    than 4,300 digits (Python's int_max_str_digits: a plain ValueError, not a JSONDecodeError)."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return None
    args = value.get("arguments", value.get("parameters", {}))  # some Qwen-style data says "parameters"
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(value["name"], json.dumps(args, ensure_ascii=False))


class ChatOutputParser:
    """Feed text pieces; get back `OutputDelta`s. Call `finish()` once at the end for what was held back.

    `in_reasoning=True` when the prompt already opened the reasoning block (a generation prompt ending in
    `<think>\\n`, as MiniMind-3's template writes with thinking on): the answer then starts inside it.
    """

    def __init__(self, in_reasoning: bool = False):
        self.state = "reasoning" if in_reasoning else "content"
        self._buf = ""                   # text not yet released
        self._strip_leading = in_reasoning  # the section began at a tag: drop its leading whitespace

    @classmethod
    def for_prompt(cls, prompt: str) -> "ChatOutputParser":
        return cls(in_reasoning=prompt.rstrip().endswith(THINK_OPEN))

    def _tags(self) -> tuple[str, ...]:
        if self.state == "reasoning":
            return (THINK_CLOSE,)
        if self.state == "tool_call":
            return (CALL_CLOSE,)
        return (THINK_OPEN, THINK_CLOSE, CALL_OPEN)

    def feed(self, piece: str) -> list[OutputDelta]:
        self._buf += piece
        out: list[OutputDelta] = []
        while True:
            hits = [(i, tag) for tag in self._tags() if (i := self._buf.find(tag)) != -1]
            if not hits:
                break
            i, tag = min(hits)
            self._close_section(self._buf[:i], out)
            self._buf = self._buf[i + len(tag):]
            self._enter(tag)
        if self.state != "tool_call":
            self._release(out)
        return out

    def finish(self) -> list[OutputDelta]:
        """End of the answer: an unterminated tool call is shown as the text it was; nothing else is held."""
        out: list[OutputDelta] = []
        if self.state == "tool_call":
            self.state, self._buf = "content", CALL_OPEN + self._buf
        self._emit(self._lstrip(self._buf), out)
        self._buf = ""
        return out

    # ---- internals ------------------------------------------------------------------------------------
    def _enter(self, tag: str) -> None:
        self.state = {THINK_OPEN: "reasoning", CALL_OPEN: "tool_call"}.get(tag, "content")
        self._strip_leading = True

    def _close_section(self, text: str, out: list[OutputDelta]) -> None:
        if self.state == "tool_call":
            call = parse_tool_call(text)
            if call is not None:
                out.append(OutputDelta("tool_call", call=call))
            else:  # not a call we understand: keep what the model wrote visible
                self._emit(f"{CALL_OPEN}{text}{CALL_CLOSE}", out)
            return
        self._emit(self._lstrip(text).rstrip(), out)

    def _release(self, out: list[OutputDelta]) -> None:
        """Emit what can no longer be part of a tag or of whitespace next to one."""
        text = self._lstrip(self._buf)
        keep = held_suffix(text, self._tags())
        stable = text[:len(text) - keep]
        body = stable.rstrip()
        self._emit(body, out)
        self._buf = stable[len(body):] + text[len(text) - keep:]

    def _lstrip(self, text: str) -> str:
        if self._strip_leading:
            stripped = text.lstrip()
            if stripped:
                self._strip_leading = False
            return stripped
        return text

    def _emit(self, text: str, out: list[OutputDelta]) -> None:
        if not text:
            return
        kind = "reasoning" if self.state == "reasoning" else "content"
        if out and out[-1].kind == kind:
            out[-1].text += text
        else:
            out.append(OutputDelta(kind, text))


def parse_chat_output(text: str, in_reasoning: bool = False) -> ChatOutput:
    """Split a whole answer (exactly what streaming the same text would give)."""
    return collect(ChatOutputParser(in_reasoning), [text])


def collect(parser: ChatOutputParser, pieces: Iterable[str]) -> ChatOutput:
    result = ChatOutput()
    for piece in pieces:
        for delta in parser.feed(piece):
            result.add(delta)
    for delta in parser.finish():
        result.add(delta)
    return result
