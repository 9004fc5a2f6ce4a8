"""The text of a `tool` message: what one tool call returned or why it failed, as a JSON object within a size cap.

Shared by both places a tool runs (a thread of this process, or the tool worker process, core.tools.worker), so
a result reads the same wherever it was computed.
"""
from __future__ import annotations

import json
from typing import Any, Callable


class ToolError(Exception):
    """A problem the model should read (bad argument, unknown unit): becomes {"error": message}."""


def error_result(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def call_text(name: str, func: Callable[..., Any], args: dict, max_chars: int) -> str:
    """Call ``func(**args)`` and return the tool message: {"result": value} or {"error": "name: why"}."""
    try:
        value = func(**args)
    except ToolError as exc:
        return error_result(f"{name}: {exc}")
    except Exception as exc:  # a tool bug (MemoryError included) must not end the chat: the model is told
        return error_result(f"{name}: {type(exc).__name__}: {exc}")
    try:  # ValueError also for an int past int_max_str_digits
        text = json.dumps({"result": value}, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return error_result(f"{name}: result is not JSON ({exc})")
    if len(text) > max_chars:
        return error_result(f"{name}: result of {len(text)} characters exceeds the {max_chars}-character limit")
    return text
