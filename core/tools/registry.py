"""Tools a model may call: name, JSON-schema description (OpenAI function format), and a guarded runner.

A tool call becomes a `tool` message whatever happens: unknown tool, bad arguments, an exception, a tool slower
than its timeout or a result larger than its cap all come back as `{"error": ...}` text the model reads, never
as an exception in the chat loop.

Where a tool runs: an ``isolated`` tool (every built-in: their arguments are model-written) runs in the tool
worker process (core.tools.worker), which is killed when the timeout passes, so the time limit is real and no
work of the tool's holds this process's GIL. Any other tool runs on a daemon thread joined with its timeout;
Python cannot kill a thread, so such a tool must be bounded by itself, and the timeout only guarantees that the
caller stops waiting.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from core.tools.result import ToolError, call_text, error_result
from core.tools.worker import WORKERS, func_path

DEFAULT_TIMEOUT_S = 2.0
DEFAULT_MAX_RESULT_CHARS = 2048  # MiniMind's agent rollouts cut tool results to 2,048 characters
JSON_TYPES = {"string": str, "number": (int, float), "integer": int, "boolean": bool, "object": dict,
              "array": list}


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict                          # JSON schema of the arguments object
    func: Callable[..., Any]                  # called with the arguments as keywords; returns JSON-able data
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    isolated: bool = False                    # run in the tool worker process (func: a module-level function)

    def __post_init__(self) -> None:
        if self.isolated:
            func_path(self.func)  # ValueError now, not at the first call

    def schema(self) -> dict:
        """OpenAI function-calling format, as `tools` in a chat request and in the chat template."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def check_arguments(self, args: dict) -> None:
        props = self.parameters.get("properties", {})
        missing = [k for k in self.parameters.get("required", []) if k not in args]
        if missing:
            raise ToolError(f"missing argument(s): {', '.join(missing)}")
        unknown = [k for k in args if k not in props]
        if unknown:
            raise ToolError(f"unknown argument(s): {', '.join(unknown)}; expected {', '.join(props) or 'none'}")
        for key, value in args.items():
            expected = JSON_TYPES.get(props[key].get("type"))
            if expected and (not isinstance(value, expected) or (isinstance(value, bool) and expected != bool)):
                raise ToolError(f"{key}: expected {props[key]['type']}, got {type(value).__name__}")


@dataclass
class ToolRegistry:
    tools: dict[str, Tool] = field(default_factory=dict)

    def register(self, tool: Tool) -> Tool:
        self.tools[tool.name] = tool
        return tool

    def names(self) -> list[str]:
        return list(self.tools)

    def schemas(self, names: list[str] | None = None) -> list[dict]:
        return [self.tools[n].schema() for n in (self.names() if names is None else names) if n in self.tools]

    def run(self, name: str, arguments: str | dict) -> str:
        """Run one call; always returns the text of the `tool` message (a JSON object)."""
        tool = self.tools.get(name)
        if tool is None:
            return error_result(f"tool not found: {name!r}; available: {', '.join(self.names()) or 'none'}")
        try:
            args = json.loads(arguments) if isinstance(arguments, str) else arguments
        except (ValueError, RecursionError):  # ValueError: also an integer of more than 4,300 digits
            return error_result("arguments are not valid JSON")
        if not isinstance(args, dict):
            return error_result("arguments must be a JSON object")
        try:
            tool.check_arguments(args)
        except ToolError as exc:
            return error_result(f"{name}: {exc}")
        if tool.isolated:
            return WORKERS.call(tool.func, name, args, tool.timeout_s, tool.max_result_chars)
        return _run_on_thread(tool, args)

    def answer(self, calls) -> list[dict]:
        """Run each `ToolCall` (core.infer.chat_output) and return the `tool` messages, in order."""
        return [tool_message(c.id, c.name, self.run(c.name, c.arguments)) for c in calls]


def _run_on_thread(tool: Tool, args: dict) -> str:
    box: dict[str, str] = {}

    def target():
        box["text"] = call_text(tool.name, tool.func, args, tool.max_result_chars)

    worker = threading.Thread(target=target, name=f"tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(tool.timeout_s)
    if worker.is_alive():
        return error_result(f"{tool.name}: timed out after {tool.timeout_s:g} s")
    return box["text"]


def tool_message(call_id: str, name: str, content: str) -> dict:
    """The `tool` turn answering one call (OpenAI shape; the chat template renders it as a tool response)."""
    return {"role": "tool", "tool_call_id": call_id, "name": name, "content": content}
