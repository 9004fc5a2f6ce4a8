"""The minimind-3 message form: tools, tool calls, tool responses and reasoning, as records store them.

MiniMind's sft_t2t files keep `tools` on the system message and `tool_calls` on assistant messages as JSON
strings; OpenAI-style callers pass lists. `normalize_messages` turns either into the form the chat template
takes (lists; call arguments are left as given: an object is rendered with `tojson`, a string as written, as
upstream's template does). `check_messages` names the first problem of the tool and reasoning parts of a
conversation as a `MessageError(field, message)`; core.data turns it into `file:line: field: message`.
"""
from __future__ import annotations

import json

from core.tokenizer.special_tokens import THINK_END, THINK_START


class MessageError(ValueError):
    """A malformed part of a conversation: `field` is its JSON path (e.g. `conversations[2].tool_calls[0]`)."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


def _parsed(value, field: str, kind: type, what: str):
    """`value`, parsed first when it is a JSON string, checked to be a `kind`."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise MessageError(field, f"invalid JSON: {exc.msg} at column {exc.colno}") from None
        except (ValueError, RecursionError) as exc:  # an integer past int_max_str_digits, or nesting too deep
            raise MessageError(field, f"invalid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise MessageError(field, f"must be {what} (or a JSON string of one), got {type(value).__name__}")
    return value


def parse_tools(value, field: str = "tools") -> list:
    """`tools` as a list: a JSON string is parsed, a list is returned as it is."""
    return _parsed(value, field, list, "a list of tool schemas")


def parse_tool_calls(value, field: str = "tool_calls") -> list:
    """`tool_calls` as a list: a JSON string is parsed, a list is returned as it is."""
    return _parsed(value, field, list, "a list of tool calls")


def tool_name(tool) -> str | None:
    """The name in an OpenAI tool schema (`{"type": "function", "function": {"name": ...}}`) or a bare one."""
    if not isinstance(tool, dict):
        return None
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    return fn.get("name") if isinstance(fn.get("name"), str) else None


def call_function(call) -> dict:
    """The `{"name", "arguments"}` part of a call, whether written bare or OpenAI-style under `function`."""
    if isinstance(call, dict) and isinstance(call.get("function"), dict):
        return call["function"]
    return call if isinstance(call, dict) else {}


def parse_arguments(arguments, field: str = "arguments") -> dict:
    """A call's arguments as an object: a JSON string is parsed."""
    return _parsed(arguments, field, dict, "an object")


def normalize_messages(messages: list, tools=None) -> tuple[list, list | None]:
    """(messages, tools) in the chat template's form; the input is not modified.

    `tools` is the argument when given (a list or a JSON string), else the first system message's `tools`.
    Each `tool_calls` JSON string becomes a list. Already-structured messages come back equal.
    """
    if isinstance(tools, str):
        tools = parse_tools(tools)
    out = []
    for i, message in enumerate(messages):
        if isinstance(message, dict):
            message = dict(message)
            if tools is None and message.get("role") == "system" and message.get("tools"):
                tools = parse_tools(message["tools"], f"messages[{i}].tools")
            if isinstance(message.get("tool_calls"), str):
                message["tool_calls"] = parse_tool_calls(message["tool_calls"], f"messages[{i}].tool_calls")
        out.append(message)
    return out, tools


def split_reasoning(message: dict) -> tuple[str, str]:
    """(reasoning, reply) of an assistant message, by the chat template's rule: `reasoning_content` when it is a
    string, else the text before `</think>` (after `<think>`) in the content; reasoning is stripped of newlines."""
    content = message.get("content") if isinstance(message.get("content"), str) else ""
    if isinstance(message.get("reasoning_content"), str):
        return message["reasoning_content"].strip("\n"), content
    if THINK_END in content:
        head, _, tail = content.partition(THINK_END)
        return head.split(THINK_START)[-1].strip("\n"), tail.lstrip("\n")
    return "", content


def carries_loss(message) -> bool:
    """Whether SFT/DPO training learns a message's tokens (core.data's `ChatMasker` rule, stated per message for
    displays): an assistant turn's reply, reasoning and tool calls are learned; system (tools block included),
    user and tool-response turns never are. Here, not in core.data, so a viewer can ask without importing torch."""
    return isinstance(message, dict) and message.get("role") == "assistant"


def _present(value) -> bool:
    return value is not None and value != "" and value != []


def check_messages(messages: list, name: str = "conversations") -> None:
    """Raise MessageError for the first problem in the tool and reasoning parts of `messages`.

    Roles and string contents are checked by the caller; here: `tools` only on the system message, each a
    schema with a name; `tool_calls` only on assistant messages, each with a name the record declares and
    arguments that are an object; every tool response follows a call (consecutive responses answer the calls
    of the assistant message before them in order, at most one each); reasoning only on assistant messages, as
    `reasoning_content` or one closed `<think>` block in the content, not both.
    """
    declared: set[str] | None = None
    open_calls = 0
    for i, message in enumerate(messages):
        where, role = f"{name}[{i}]", message["role"]
        if _present(message.get("tools")):
            if role != "system":
                raise MessageError(f"{where}.tools", "tools belong on the system message")
            declared = _check_tools(message["tools"], f"{where}.tools")
        if _present(message.get("tool_calls")):
            if role != "assistant":
                raise MessageError(f"{where}.tool_calls", "only assistant messages make tool calls")
            open_calls = _check_calls(message["tool_calls"], f"{where}.tool_calls", declared)
        elif role == "tool":
            if open_calls == 0:
                previous = messages[i - 1]["role"] if i else None
                raise MessageError(f"{where}.role", "more tool responses than the calls before them"
                                   if previous == "tool" else
                                   "a tool response with no tool call before it; the assistant message "
                                   "before it needs tool_calls")
            open_calls -= 1
        else:
            open_calls = 0
        _check_reasoning(message, where)


def _check_tools(value, field: str) -> set[str]:
    tools = parse_tools(value, field)
    for j, tool in enumerate(tools):
        if not tool_name(tool):
            raise MessageError(f"{field}[{j}]", 'must be a tool schema with a name, e.g. '
                               '{"type": "function", "function": {"name": "get_time", "parameters": {...}}}')
    return {tool_name(t) for t in tools}


def _check_calls(value, field: str, declared: set[str] | None) -> int:
    calls = parse_tool_calls(value, field)
    for j, call in enumerate(calls):
        where = f"{field}[{j}]"
        fn = call_function(call)
        if not isinstance(call, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise MessageError(where, 'must be a call {"name": "...", "arguments": {...}}')
        if "arguments" not in fn:
            raise MessageError(f"{where}.arguments", "missing; use {} for a call without arguments")
        parse_arguments(fn["arguments"], f"{where}.arguments")
        if declared is None:
            raise MessageError(f"{where}.name", f"calls tool {fn['name']!r} but the record declares no tools; "
                               "list them in the system message's tools")
        if fn["name"] not in declared:
            raise MessageError(f"{where}.name", f"calls tool {fn['name']!r}, which the record does not declare "
                               f"(declared: {', '.join(sorted(declared)) or 'none'})")
    return len(calls)


def _check_reasoning(message: dict, where: str) -> None:
    reasoning, content = message.get("reasoning_content"), message.get("content")
    if reasoning is not None:
        if message["role"] != "assistant":
            raise MessageError(f"{where}.reasoning_content", "only assistant messages carry reasoning")
        if not isinstance(reasoning, str):
            raise MessageError(f"{where}.reasoning_content", f"must be a string, got {type(reasoning).__name__}")
    if message["role"] != "assistant" or not isinstance(content, str):
        return
    if THINK_END in content and isinstance(reasoning, str):
        raise MessageError(f"{where}.content", f"has a {THINK_START} block and reasoning_content too; keep one")
    if content.count(THINK_START) > 1 or content.count(THINK_END) > 1:
        raise MessageError(f"{where}.content", f"has more than one {THINK_START} block")
    if THINK_START in content and THINK_END not in content:
        raise MessageError(f"{where}.content", f"opens {THINK_START} but never closes it with {THINK_END}")
