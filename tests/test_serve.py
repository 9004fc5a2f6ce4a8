"""The OpenAI-compatible server, driven by the official `openai` client and by raw malformed HTTP."""
from __future__ import annotations

import http.client
import json
import threading

import pytest

from core.infer.chat_output import parse_chat_output

openai = pytest.importorskip("openai", reason="the server tests use the official openai client (pip install openai)")



@pytest.fixture(scope="module")
def server(api_server):
    return api_server


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)


def raw(server, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def chat_body(server, **overrides) -> str:
    body = {"model": server.backend.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    body.update(overrides)
    return json.dumps(body)


def test_models_lists_the_loaded_model(client, server):
    assert [m.id for m in client.models.list().data] == [server.backend.name]
    assert server.server_address[0] == "127.0.0.1"


def test_chat_completion_matches_the_backend(client, server):
    messages = [{"role": "user", "content": "你好"}]
    resp = client.chat.completions.create(model=server.backend.name, messages=messages, max_tokens=12,
                                          temperature=0)
    from core.infer.sampling import SamplingParams

    expected = server.backend.chat(messages, SamplingParams.greedy_params(12))
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == parse_chat_output(expected).content
    assert choice.finish_reason in ("stop", "length")
    prompt_len = len(server.backend.tokenize(server.backend.render_chat(messages)))
    assert resp.usage.prompt_tokens == prompt_len and 1 <= resp.usage.completion_tokens <= 12
    assert resp.usage.total_tokens == prompt_len + resp.usage.completion_tokens


def test_chat_stream_chunks_join_to_the_non_stream_answer(client, server):
    kw = dict(model=server.backend.name, messages=[{"role": "user", "content": "讲个故事"}], max_tokens=16,
              temperature=0)
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 1


def test_stream_ends_with_done_sentinel(server):
    status, data = raw(server, "POST", "/v1/chat/completions", chat_body(server, stream=True),
                       {"Content-Type": "application/json"})
    events = [line for line in data.decode().split("\n\n") if line]
    assert status == 200 and events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


def test_completions_plain_and_streamed(client, server):
    kw = dict(model=server.backend.name, prompt="Once upon a time", max_tokens=10, temperature=0, stop=["\n\n"])
    resp = client.completions.create(**kw)
    assert resp.object == "text_completion" and resp.usage.completion_tokens >= 1
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
    assert streamed == resp.choices[0].text


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_max_tokens_beyond_the_context_generates_what_fits_and_ends_with_length(client, server, endpoint, stream):
    """As MiniMind's own server, Ollama and llama.cpp do (upstream's eval_toolcall.py sends max_tokens=8192)."""
    if endpoint == "chat":
        api, kw = client.chat.completions, {"messages": [{"role": "user", "content": "hi"}]}
    else:
        api, kw = client.completions, {"prompt": "Once"}
    kw.update(model=server.backend.name, max_tokens=8192, temperature=0, extra_body={"ignore_eos": True})
    if stream:
        chunks = list(api.create(stream=True, stream_options={"include_usage": True}, **kw))
        [finish] = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        usage = chunks[-1].usage
    else:
        reply = api.create(**kw)
        finish, usage = reply.choices[0].finish_reason, reply.usage
    assert finish == "length" and usage.prompt_tokens + usage.completion_tokens == server.backend.max_context


@pytest.mark.parametrize("field,value", [("max_tokens", 1_048_577), ("max_completion_tokens", 10**12),
                                         ("max_tokens", -5), ("max_tokens", 0)])
def test_max_tokens_no_model_could_serve_gets_400_naming_the_field(server, field, value):
    status, data = raw(server, "POST", "/v1/chat/completions", chat_body(server, **{field: value}),
                       {"Content-Type": "application/json"})
    error = json.loads(data)["error"]
    assert status == 400 and error["param"] == field, error


def test_tiny_temperature_samples_like_greedy(client, server):
    kw = dict(model=server.backend.name, messages=[{"role": "user", "content": "hi"}], max_tokens=8)
    tiny = client.chat.completions.create(temperature=1e-300, seed=1, **kw).choices[0].message.content
    assert tiny == client.chat.completions.create(temperature=0, **kw).choices[0].message.content


def test_seeded_sampling_is_reproducible_over_http(client, server):
    kw = dict(model=server.backend.name, messages=[{"role": "user", "content": "hi"}], max_tokens=12,
              temperature=1.0, seed=5)
    a = client.chat.completions.create(**kw).choices[0].message.content
    assert client.chat.completions.create(**kw).choices[0].message.content == a


@pytest.mark.parametrize("case", [
    ("POST", "/v1/chat/completions", "{not json", "application/json", 400),
    ("POST", "/v1/chat/completions", "[1, 2]", "application/json", 400),
    ("POST", "/v1/chat/completions", '{"model": "M"}', "application/json", 400),            # no messages
    ("POST", "/v1/chat/completions", '{"model": "M", "messages": "hi"}', "application/json", 400),
    ("POST", "/v1/chat/completions", '{"model": "M", "messages": [{"role": "user", "content": 5}]}',
     "application/json", 400),
    ("POST", "/v1/chat/completions", '{"model": "M", "messages": [], "max_tokens": 1}', "application/json", 400),
    ("POST", "/v1/chat/completions", "BODY:max_tokens=10000000", "application/json", 400),
    ("POST", "/v1/chat/completions", "BODY:temperature=-1", "application/json", 400),
    ("POST", "/v1/chat/completions", "BODY:temperature=NaN", "application/json", 400),
    ("POST", "/v1/chat/completions", "BODY:seed=1e400", "application/json", 400),
    ("POST", "/v1/chat/completions", "BODY:n=2", "application/json", 400),
    ("POST", "/v1/chat/completions", '{"model": "M", "messages": [{"role": "user", "content": "\\ud800"}]}',
     "application/json", 400),
    ("POST", "/v1/chat/completions", "BODY:repetition_penalty=1e-300", "application/json", 400),
    ("POST", "/v1/chat/completions", '{"model": "M", "messages": [{"content": "no role"}]}', "application/json", 400),
    ("POST", "/v1/chat/completions", "[" * 100000 + "]" * 100000, "application/json", 400),
    ("POST", "/v1/chat/completions", 'BODY:temperature="hot"', "application/json", 400),
    ("POST", "/v1/chat/completions", "BODY:stream=1", "application/json", 400),
    ("POST", "/v1/chat/completions", 'BODY:model="gpt-4"', "application/json", 404),
    ("POST", "/v1/chat/completions", "BODY:", "text/plain", 415),
    ("POST", "/v1/chat/completions", "", "application/json", 400),
    ("POST", "/v1/chat/completions", b"\xff\xfe{}", "application/json", 400),
    ("POST", "/v1/completions", '{"model": "M", "prompt": [999999]}', "application/json", 400),
    ("GET", "/v1/chat/completions", None, None, 405),
    ("GET", "/v2/nothing", None, None, 404),
    ("DELETE", "/v1/models", None, None, 405),
])
def test_malformed_requests_get_json_errors_and_the_server_survives(server, client, case):
    method, path, body, ctype, expected = case
    if isinstance(body, str) and body.startswith("BODY:"):
        key, _, value = body[5:].partition("=")
        body = chat_body(server, **({key: json.loads(value)} if key else {}))
    body = body.replace('"M"', json.dumps(server.backend.name)) if isinstance(body, str) else body
    status, data = raw(server, method, path, body, {"Content-Type": ctype} if ctype else {})
    assert status == expected, data
    error = json.loads(data)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    # and a good request still works afterwards
    ok = client.chat.completions.create(model=server.backend.name, messages=[{"role": "user", "content": "x"}],
                                        max_tokens=2)
    assert ok.choices[0].message.role == "assistant"


def test_oversized_body_is_refused_without_reading_it(server):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(1 << 30))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large"
    conn.close()


def test_garbage_request_line_gets_a_json_error(server):
    import socket

    with socket.create_connection(server.server_address[:2], timeout=30) as sock:
        sock.sendall(b"\x00\x01 GARBAGE\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    # http.server answers an unparseable request line HTTP/0.9-style: the body alone, no status line.
    body = data.partition(b"\r\n\r\n")[2] if data.startswith(b"HTTP/") else data
    assert json.loads(body)["error"]["message"].startswith("Bad")


def test_client_leaving_mid_stream_frees_the_server(server, client):
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    conn.request("POST", "/v1/chat/completions", chat_body(server, stream=True, max_tokens=400, temperature=1.0),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.readline().startswith(b"data: ")
    conn.close()  # hang up after the first event
    ok = client.chat.completions.create(model=server.backend.name, messages=[{"role": "user", "content": "x"}],
                                        max_tokens=2, timeout=20)
    assert ok.choices[0].message.role == "assistant"


def test_concurrent_streaming_clients_all_complete_and_are_batched(server):
    """32 clients at once, each streaming: every stream completes with [DONE], and the torch engine decoded
    several of them in one batch (requests that arrive while a batch runs join the next one)."""
    results = []

    def ask(i):
        status, data = raw(server, "POST", "/v1/chat/completions",
                           chat_body(server, max_tokens=8, stream=True, temperature=0.9, seed=i,
                                     messages=[{"role": "user", "content": f"question {i}"}]),
                           {"Content-Type": "application/json"})
        results.append((status, data.decode().rstrip().endswith("data: [DONE]")))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [(200, True)] * 32
    assert server.engine.largest_batch > 1


def test_a_seeded_answer_does_not_depend_on_its_batch_companions(server, client):
    kw = dict(model=server.backend.name, messages=[{"role": "user", "content": "你好 there"}], max_tokens=10,
              temperature=1.0, seed=7)
    alone = client.chat.completions.create(**kw).choices[0].message.content
    answers = []

    def ask(messages, seed):
        answers.append(client.chat.completions.create(**{**kw, "messages": messages, "seed": seed}))

    threads = [threading.Thread(target=ask, args=([{"role": "user", "content": "x" * (i + 1)}], i))
               for i in range(6)] + [threading.Thread(target=ask, args=(kw["messages"], 7))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert alone in [a.choices[0].message.content for a in answers]


def test_tools_are_rendered_into_the_prompt(client, server):
    from core.tools import builtin_registry

    tools = builtin_registry().schemas(["calculate_math"])  # the tiny model's context is 512 tokens
    messages = [{"role": "user", "content": "what is 2+3?"}]
    resp = client.chat.completions.create(model=server.backend.name, messages=messages, tools=tools, max_tokens=2)
    prompt = server.backend.render_chat(messages, tools)
    assert "calculate_math" in prompt and "calculate_math" not in server.backend.render_chat(messages)
    assert resp.usage.prompt_tokens == len(server.backend.tokenize(prompt))
    none = client.chat.completions.create(model=server.backend.name, messages=messages, tools=tools,
                                          tool_choice="none", max_tokens=2)
    assert none.usage.prompt_tokens == len(server.backend.tokenize(server.backend.render_chat(messages)))


@pytest.mark.parametrize("extra", [{"tools": [{"type": "function"}]}, {"tools": "calculator"},
                                   {"tools": [{"type": "function", "function": {"name": 5}}]},
                                   {"messages": [{"role": "assistant", "content": "", "tool_calls": [{"x": 1}]}]},
                                   {"messages": [{"role": "tool", "content": "1", "tool_call_id": 5}]},
                                   {"open_thinking": "yes"}, {"chat_template_kwargs": {"enable_thinking": 1}}])
def test_malformed_tool_and_thinking_fields_get_400(server, extra):
    status, data = raw(server, "POST", "/v1/chat/completions", chat_body(server, **extra),
                       {"Content-Type": "application/json"})
    assert status == 400 and json.loads(data)["error"]["param"]


# ---- tool calls and reasoning, end to end, with answers we control ---------------------------------------------
CALL = '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "23 * 19"}}\n</tool_call>'


def test_tool_round_trip_call_result_answer(scripted_server):
    from core.tools import builtin_registry

    registry = builtin_registry()
    srv, client = scripted_server(f"Let me calculate.\n{CALL}", "23 × 19 = 437.")
    messages = [{"role": "user", "content": "What is 23 times 19?"}]
    kw = dict(model="scripted-replay", tools=registry.schemas(["calculate_math"]), max_tokens=200)
    first = client.chat.completions.create(messages=messages, **kw)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me calculate."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "calculate_math" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"expression": "23 * 19"}
    assert "calculate_math" in srv.backend.prompts[0]  # the tools block reached the model

    result = registry.run(call.function.name, call.function.arguments)
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": result}]
    second = client.chat.completions.create(messages=messages, **kw)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content == "23 × 19 = 437."
    assert second.choices[0].message.tool_calls is None
    prompt = srv.backend.prompts[1]
    assert '{"result": 437}' in prompt and "23 * 19" in prompt  # the call and its result were rendered back


def test_streamed_tool_calls_arrive_as_openai_deltas(scripted_server):
    srv, client = scripted_server(f"{CALL}\n{CALL.replace('23 * 19', '1 + 1')}")
    chunks = list(client.chat.completions.create(model="scripted-replay", stream=True, max_tokens=200,
                                                 messages=[{"role": "user", "content": "two sums"}]))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [tc for d in deltas for tc in (d.tool_calls or [])]
    assert [tc.index for tc in calls] == [0, 1]
    assert [json.loads(tc.function.arguments)["expression"] for tc in calls] == ["23 * 19", "1 + 1"]
    assert all(tc.id and tc.type == "function" and tc.function.name == "calculate_math" for tc in calls)
    assert "".join(d.content or "" for d in deltas) == ""
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_streamed_reasoning_then_answer(scripted_server):
    reply = "The user greets me.\nI should greet back.\n</think>\n\nHello! 你好"
    srv, client = scripted_server(reply, reply)
    kw = dict(model="scripted-replay", max_tokens=200, messages=[{"role": "user", "content": "hi"}],
              extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    chunks = list(client.chat.completions.create(stream=True, **kw))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert reasoning == "The user greets me.\nI should greet back." and content == "Hello! 你好"
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert all(not (d.model_extra or {}).get("reasoning_content") for d in deltas[first_content:])
    whole = client.chat.completions.create(**kw).choices[0].message
    assert whole.content == content and whole.model_extra["reasoning_content"] == reasoning


def test_thinking_switch_reaches_the_template(scripted_server, monkeypatch):
    srv, client = scripted_server("a", "b", "c")
    seen = []
    original = srv.backend.render_chat
    monkeypatch.setattr(srv.backend, "render_chat",
                        lambda messages, tools=None, think=None: seen.append(think) or original(messages, tools, think))
    msgs = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="scripted-replay", messages=msgs, extra_body={"open_thinking": True})
    client.chat.completions.create(model="scripted-replay", messages=msgs,
                                   extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    client.chat.completions.create(model="scripted-replay", messages=msgs)
    assert seen == [True, False, None]
