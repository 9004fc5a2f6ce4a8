"""Upstream MiniMind's `scripts/eval_toolcall.py` in API mode, against our server through the official client.

That script streams every turn with `max_tokens=8192` (more than a MiniMind context holds), gathers
`delta.tool_calls` by index (id, name and arguments concatenated), runs the tools, sends the assistant turn and
one `tool` message per call back, and loops until a turn calls nothing. Our server once refused its first
request (400: the context holds fewer tokens). The model's answers are scripted (tests/scripted_backend.py) so
the conversation is the one a tool-trained model has, token by token through the real server.
"""
from __future__ import annotations

import json

import pytest

openai = pytest.importorskip("openai", reason="the server tests use the official openai client (pip install openai)")

CALL = '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "%s"}}\n</tool_call>'


def chat_api(client, messages: list[dict], tools: list[dict]) -> tuple[str, list[dict] | None, str]:
    """One streamed turn, read as upstream's `chat_api(..., stream=True)` reads it; plus the finish reason."""
    response = client.chat.completions.create(model="scripted-replay", messages=messages, tools=tools, stream=True,
                                              temperature=0.9, max_tokens=8192, top_p=0.9)
    content, tool_calls, finish = "", None, None
    for chunk in response:
        delta = chunk.choices[0].delta
        finish = chunk.choices[0].finish_reason or finish
        content += delta.content or ""
        for piece in delta.tool_calls or []:
            tool_calls = tool_calls if tool_calls is not None else []
            index = piece.index if piece.index is not None else len(tool_calls)
            while len(tool_calls) <= index:
                tool_calls.append({"id": "", "function": {"name": "", "arguments": ""}})
            tool_calls[index]["id"] += piece.id or ""
            if piece.function:
                tool_calls[index]["function"]["name"] += piece.function.name or ""
                tool_calls[index]["function"]["arguments"] += piece.function.arguments or ""
    return content, tool_calls, finish


def run_case(client, prompt: str, tools: list[dict], registry, max_turns: int = 4) -> list[tuple]:
    """Upstream's `run_case` loop (API mode); returns each turn's (content, tool_calls, finish_reason)."""
    messages, turns = [{"role": "user", "content": prompt}], []
    for _ in range(max_turns):
        content, calls, finish = chat_api(client, messages, tools)
        turns.append((content, calls, finish))
        if not calls:
            break
        messages.append({"role": "assistant", "content": content,
                         "tool_calls": [{"id": c["id"], "type": "function", "function": c["function"]} for c in calls]})
        for call in calls:
            result = registry.run(call["function"]["name"], call["function"]["arguments"])
            messages.append({"role": "tool", "content": result, "tool_call_id": call["id"]})
    return turns


def test_a_streamed_multi_turn_tool_conversation_with_max_tokens_8192(scripted_server):
    from core.tools import builtin_registry

    registry = builtin_registry()
    srv, client = scripted_server(f"{CALL % '256 * 37'}\n{CALL % '2 ** 10'}",
                                  "256 × 37 = 9472, and 2 ** 10 = 1024.")
    tools = registry.schemas(["calculate_math"])
    turns = run_case(client, "帮我算一下 256 乘以 37, 再算 2 的 10 次方", tools, registry)

    (content, calls, finish), (answer, no_calls, last_finish) = turns
    assert finish == "tool_calls" and content == ""
    assert [c["function"]["name"] for c in calls] == ["calculate_math", "calculate_math"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"expression": "256 * 37"},
                                                                       {"expression": "2 ** 10"}]
    assert len({c["id"] for c in calls}) == 2 and all(c["id"].startswith("call_") for c in calls)
    assert answer == "256 × 37 = 9472, and 2 ** 10 = 1024." and no_calls is None and last_finish == "stop"
    second_prompt = srv.backend.prompts[1]
    assert '{"result": 9472}' in second_prompt and '{"result": 1024}' in second_prompt  # both results went back


def test_a_turn_that_reaches_the_context_ends_with_length_and_its_cut_call_stays_text(scripted_server):
    """8192 tokens asked, a 600-token context: the answer stops where the context is full; the call it was
    writing never closed, so it is no tool call, and upstream's loop ends."""
    from core.tools import builtin_registry

    registry = builtin_registry()
    filler = " ".join(str(n) for n in range(2000))
    reply = f"{filler}\n{CALL % '1 + 1'}"
    srv, client = scripted_server(reply, reply, max_context=600)
    tools = registry.schemas(["calculate_math"])
    [(content, calls, finish)] = run_case(client, "count", tools, registry)
    assert finish == "length" and calls is None
    assert content and filler.startswith(content.strip())
    whole = client.chat.completions.create(model="scripted-replay", messages=[{"role": "user", "content": "count"}],
                                           tools=tools, max_tokens=8192)  # the same, not streamed
    assert whole.choices[0].finish_reason == "length" and whole.choices[0].message.content == content
    assert whole.usage.prompt_tokens + whole.usage.completion_tokens == 600
