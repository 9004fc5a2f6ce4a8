"""Constrained decoding: tool calls limited to the offered tools and their schemas, and response_format JSON.

A random-weight model writes anything at all, so whatever it says under a grammar is what the grammar made of it.
The tools have bounded arguments (an enum, an integer range, a boolean) so a call always ends well inside the token
budget. The server tests use the official `openai` client on 127.0.0.1; the GGUF test runs llama.cpp's grammar.
"""
from __future__ import annotations

import json

import jsonschema
import pytest

from core.infer.answer_format import AnswerFormat, AnswerFormatError
from core.infer.chat_output import parse_chat_output

TOOLS = [
    {"type": "function", "function": {"name": "pick_unit", "parameters": {
        "type": "object", "properties": {"unit": {"enum": ["km", "m", "cm"]}, "count": {"type": "integer",
                                                                                       "minimum": 0, "maximum": 9}},
        "required": ["unit", "count"]}}},
    {"type": "function", "function": {"name": "toggle", "parameters": {
        "type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]}}},
]
SCHEMA = {"type": "object", "properties": {"size": {"enum": ["small", "large"]}, "ok": {"type": "boolean"}},
          "required": ["size", "ok"], "additionalProperties": False}
MESSAGES = [{"role": "user", "content": "Go."}]  # short: the tiny model's context is 512 tokens
CHOICES = ["auto", "required", {"type": "function", "function": {"name": "toggle"}}]


def schema_of(name: str) -> dict:
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)


def unbounded(schema: dict) -> dict:
    return json.loads(json.dumps(schema).replace('"minimum": 0, "maximum": 9', '"minimum": -1e30'))


def assert_calls_valid(calls, allowed: set[str]) -> None:
    for call in calls:
        assert call.name in allowed
        jsonschema.validate(json.loads(call.arguments), schema_of(call.name))


def test_tool_choice_must_name_an_offered_tool_and_required_needs_tools():
    with pytest.raises(AnswerFormatError, match="not among the offered tools") as err:
        AnswerFormat.from_openai(TOOLS, {"type": "function", "function": {"name": "unit_converter"}})
    assert err.value.param == "tool_choice"
    with pytest.raises(AnswerFormatError, match="needs at least one tool"):
        AnswerFormat.from_openai([], "required")
    assert AnswerFormat.from_openai(TOOLS, "none").rendered_tools is None


@pytest.mark.parametrize("choice", CHOICES + ["none"])
def test_every_tool_choice_yields_only_valid_calls_to_the_allowed_tools(infer_checkpoint, torch_single_thread,
                                                                        choice):
    from core.infer import SamplingParams
    from core.infer.backend import TorchBackend

    fmt = AnswerFormat.from_openai(TOOLS, choice, parallel_tool_calls=False)  # one call: it ends within budget
    allowed = {t["function"]["name"] for t in fmt.callable_tools}
    with TorchBackend(infer_checkpoint) as backend:
        for seed in range(3):
            raw = "".join(backend.chat_stream(MESSAGES, SamplingParams(max_new_tokens=60, temperature=1.0,
                                                                       top_k=0, top_p=1.0, seed=seed),
                                              answer_format=fmt))
            out = parse_chat_output(raw)
            if backend.finish_reason == "stop":  # nothing that looked like a call failed to parse
                assert "<tool_call>" not in out.content
            assert_calls_valid(out.tool_calls, allowed)
            if choice not in ("auto", "none"):
                assert out.tool_calls and not out.content.strip()
            if choice == "none":
                assert not out.tool_calls


def test_thinking_comes_first_then_the_required_call(infer_checkpoint, torch_single_thread):
    from core.infer import SamplingParams
    from core.infer.backend import TorchBackend

    with TorchBackend(infer_checkpoint) as backend:
        fmt = AnswerFormat.from_openai(TOOLS, "required", parallel_tool_calls=False)
        prompt, constraint = backend.prepare_chat(MESSAGES, None, True, fmt)
        assert prompt.endswith("<think>\n")
        # A random model may reason past any budget; force the end of the reasoning, then let the grammar decide.
        ids = backend.tokenize("I should call a tool.</think>\n\n")
        for token in ids:
            constraint.accept(token)
        raw = "".join(backend.stream_ids(backend.tokenize(prompt) + ids,
                                         SamplingParams(max_new_tokens=60, temperature=0.0), constraint))
    assert_calls_valid(parse_chat_output(raw).tool_calls, {"pick_unit", "toggle"})
    assert parse_chat_output(raw).tool_calls


@pytest.fixture(scope="module")
def client(api_server):
    import openai

    client = openai.OpenAI(base_url=api_server.url, api_key="unused", max_retries=0, timeout=60)
    client.model = client.models.list().data[0].id
    return client


@pytest.mark.parametrize("choice", CHOICES)
def test_the_server_returns_only_offered_tools_with_valid_arguments(client, choice):
    reply = client.chat.completions.create(model=client.model, messages=MESSAGES, tools=TOOLS, tool_choice=choice,
                                           parallel_tool_calls=False, max_tokens=60, temperature=1.0, seed=1)
    message = reply.choices[0].message
    allowed = {"toggle"} if isinstance(choice, dict) else {"pick_unit", "toggle"}
    for call in message.tool_calls or []:
        assert call.function.name in allowed
        jsonschema.validate(json.loads(call.function.arguments), schema_of(call.function.name))
    if choice != "auto":
        assert message.tool_calls and reply.choices[0].finish_reason == "tool_calls"


def test_streamed_calls_are_constrained_too(client):
    stream = client.chat.completions.create(model=client.model, messages=MESSAGES, tools=TOOLS,
                                            tool_choice="required", max_tokens=60, temperature=0.0, stream=True,
                                            parallel_tool_calls=False)
    calls = [c for chunk in stream for c in (chunk.choices[0].delta.tool_calls or []) if chunk.choices]
    assert calls and all(c.function.name in {"pick_unit", "toggle"} for c in calls)


def test_response_format_json_schema_validates(client):
    reply = client.chat.completions.create(
        model=client.model, messages=MESSAGES, max_tokens=40, temperature=1.0, seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}})
    answer = json.loads(reply.choices[0].message.content)  # a random-init model: only the grammar makes it JSON
    jsonschema.validate(answer, SCHEMA)  # raises ValidationError on any mismatch
    assert set(answer) == {"size", "ok"} and answer["size"] in ("small", "large") and isinstance(answer["ok"], bool)


def test_a_named_tool_that_was_not_offered_is_a_400(client):
    import openai

    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(model=client.model, messages=MESSAGES, tools=TOOLS, max_tokens=8,
                                       tool_choice={"type": "function", "function": {"name": "unit_converter"}})


def test_the_gguf_path_constrains_with_llama_cpp_grammar(tiny_gguf, torch_single_thread):
    """llama-cpp-python's schema converter has no integer bounds (its own TODO), so only types and enums are
    checked here (docs/inference.md, Constrained answers)."""
    from core.infer import SamplingParams
    from core.infer.llamacpp import LlamaCppBackend

    with LlamaCppBackend(tiny_gguf, n_ctx=512, n_threads=1) as backend:
        for choice in ("required", {"type": "function", "function": {"name": "pick_unit"}}):
            fmt = AnswerFormat.from_openai(TOOLS, choice, parallel_tool_calls=False)
            raw = "".join(backend.chat_stream(MESSAGES, SamplingParams(max_new_tokens=60, temperature=1.0, seed=0),
                                              answer_format=fmt))
            out = parse_chat_output(raw)
            assert out.tool_calls
            for call in out.tool_calls:
                assert call.name in {t["function"]["name"] for t in fmt.callable_tools}
                jsonschema.validate(json.loads(call.arguments), unbounded(schema_of(call.name)))
        fmt = AnswerFormat.from_openai(None, None, {"type": "json_schema", "json_schema": {"schema": SCHEMA}})
        raw = "".join(backend.chat_stream(MESSAGES, SamplingParams(max_new_tokens=40, temperature=1.0, seed=0),
                                          answer_format=fmt))
        jsonschema.validate(json.loads(raw), SCHEMA)


def test_agent_rollouts_with_constraints_call_only_offered_tools(infer_model, torch_single_thread):
    from core.rl.agent import run_episodes
    from core.tools import builtin_registry

    model, tokenizer = infer_model
    registry = builtin_registry()
    tools = registry.schemas(["calculate_math"])
    items = [{"messages": [{"role": "user", "content": "What is 6 * 7?"}], "tools": tools}] * 2
    episodes = run_episodes(model, tokenizer, items, [False, True], registry, max_turns=2, max_new_tokens=40,
                            temperature=1.0, constrain=True)
    for ep in episodes:
        assert ep.invalid_calls == 0  # a call cut by the token budget stays unbalanced, never invalid
