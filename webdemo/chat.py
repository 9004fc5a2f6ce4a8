"""What the web demo does apart from drawing: the one model every browser session shares, and a reply with tools.

Streamlit runs each browser session's script on its own thread of one process, so the loaded model is shared
and must be guarded: a backend runs one generation at a time, and a model closed while another session
generates with it crashed the server (a GGUF freed under llama.cpp's decode). `SharedModel` holds the model
with a lock that every generation and the close take.

A reply is the Chat pane's (studio/panes/chat/presenter.py) on the same core parts: `Backend.chat_events`
streams reasoning, content and parsed tool calls (`core.infer.chat_output`), and the calls are run by the
built-in tool registry (`core.tools`, with its argument checks, time limit and result cap), then the model
answers again, up to a number of rounds.
"""
from __future__ import annotations

import argparse
import atexit
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from core.infer import open_backend
from core.infer.chat_output import ChatOutput
from webdemo import MODEL_ENV

DEFAULT_SYSTEM = "You are a helpful assistant"  # the page's system prompt until a visitor edits it


def model_from_args(argv: list[str]) -> str:
    """The operator's model: `--model PATH` (after streamlit's `--`), else $MINIMIND_MODEL, else ""."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--model", default=None)
    args, _ = parser.parse_known_args(argv)
    return args.model or os.environ.get(MODEL_ENV, "")


class ModelClosed(RuntimeError):
    """The model was closed (replaced or shut down) between two generations of a reply."""


class SharedModel:
    """A loaded model for every session of the page. One generation at a time (`generating`), and `close`
    waits for the one in progress."""

    def __init__(self, path: str, backend):
        self.path, self.backend = path, backend
        self.lock = threading.Lock()
        self.closed = False

    @contextmanager
    def generating(self) -> Iterator[object]:
        """Hold the model for one generation; yields the backend."""
        with self.lock:
            if self.closed:
                raise ModelClosed(f"{self.backend.name} was closed; send the message again")
            yield self.backend

    def close(self, timeout: float = -1) -> bool:
        """Close after the generation in progress (waiting at most `timeout` s; -1: as long as it takes).
        False when that generation did not end in time; the model is then left open."""
        if not self.lock.acquire(timeout=timeout):
            return False
        try:
            if not self.closed:
                self.closed = True
                self.backend.close()  # llama.cpp must be closed explicitly (Llama.__del__ raises at exit)
        finally:
            self.lock.release()
        return True


_current: SharedModel | None = None
_loading = threading.Lock()


def shared_model(path: str) -> SharedModel:
    """The model at `path`, loaded once and shared by every session. Another path replaces it: the old model
    is closed once its generation in progress ends."""
    global _current
    with _loading:
        if _current is not None and _current.path == path and not _current.closed:
            return _current
        if _current is not None:
            _current.close()
            _current = None
        _current = SharedModel(path, open_backend(path))
        return _current


@atexit.register
def _close_at_exit() -> None:
    if _current is not None:
        _current.close(timeout=10)  # a generation stuck past that is left to the process's end


def fit_history(backend, messages: list[dict], tools: list[dict] | None, think: bool | None,
                max_new_tokens: int) -> list[dict]:
    """Drop the oldest exchanges (a user turn and all that answered it), keeping a leading system prompt, until
    the prompt and `max_new_tokens` fit the model's context. The last question is always kept: when it alone
    does not fit, generation says so."""
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(system):]
    while True:
        prompt = backend.render_chat(system + turns, tools, think)
        starts = [i for i, m in enumerate(turns) if m["role"] == "user"]
        if len(backend.tokenize(prompt)) + max_new_tokens <= backend.max_context or len(starts) < 2:
            return system + turns
        turns = turns[starts[1]:]


@dataclass
class ReplyStats:
    tokens: int = 0
    decode_s: float = 0.0
    finish: str = "stop"   # the last answer's: "stop" | "length"
    answers: int = 0


def reply(model: SharedModel, messages: list[dict], sampling, registry, tools: list[dict] | None,
          think: bool | None, max_tool_rounds: int, show: Callable[[object], None]) -> ReplyStats:
    """Answer the conversation `messages`: stream an answer, run the calls it makes to the offered `tools`
    (`registry.schemas(names)`) with `registry`, answer again, for at most `max_tool_rounds` answers that call
    tools. Each finished turn (assistant, tool) is appended to `messages`; `show` receives every `OutputDelta`
    as it streams and every finished turn."""
    stats = ReplyStats()
    for round_ in range(max_tool_rounds + 1):
        output = ChatOutput()
        with model.generating() as backend:
            events = backend.chat_events(messages, sampling, tools, think)
            try:
                for delta in events:
                    output.add(delta)
                    show(delta)
            finally:
                events.close()  # a visitor who leaves mid-answer stops the generation here
            stats.tokens += backend.usage.completion_tokens
            stats.decode_s += backend.usage.decode_s
            stats.finish = backend.finish_reason or "stop"
            stats.answers += 1
        messages.append(output.assistant_message())
        show(messages[-1])
        if not (tools and output.tool_calls) or round_ == max_tool_rounds:
            return stats
        for message in registry.answer(output.tool_calls):
            messages.append(message)
            show(message)
    return stats
