"""The OpenAI-compatible server, driven by the official `openai` client and by raw malformed HTTP."""
from __future__ import annotations

import http.client
import json
import threading

import pytest

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
    assert choice.message.role == "assistant" and choice.message.content == expected
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
    assert resp.status == 200 and resp.fp.readline().startswith(b"data: ")
    conn.close()  # hang up after the first event
    ok = client.chat.completions.create(model=server.backend.name, messages=[{"role": "user", "content": "x"}],
                                        max_tokens=2, timeout=20)
    assert ok.choices[0].message.role == "assistant"
    assert server.generation_lock.acquire(timeout=20)
    server.generation_lock.release()


def test_concurrent_requests_are_served_one_after_another(server):
    results = []

    def ask():
        results.append(raw(server, "POST", "/v1/chat/completions", chat_body(server, max_tokens=6),
                           {"Content-Type": "application/json"})[0])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [200] * 4
