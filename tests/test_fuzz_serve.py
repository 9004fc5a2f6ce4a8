"""The OpenAI-compatible server under arbitrary request bodies: 4xx JSON errors, never a 5xx, never a dead server.

A real `make_server` on 127.0.0.1 (port 0) with the tiny inference checkpoint, driven over raw HTTP.
"""
from __future__ import annotations

import http.client
import json
import random
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.infer.sampling import MAX_NEW_TOKENS_LIMIT


MODEL = "__MODEL__"  # replaced by the served model's name when the request is sent
PATHS = ["/v1/chat/completions", "/v1/completions"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10))
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=3), max_leaves=8)
# Few tokens, or more than any model could serve (a value between runs to the context: slow, and tested apart in
# test_serve.py): a valid request must stay cheap to answer.
max_tokens = st.integers(-2, 6) | st.integers(MAX_NEW_TOKENS_LIMIT + 1, 10**30) | json_values
message = st.fixed_dictionaries({}, optional={
    "role": st.sampled_from(["user", "assistant", "system", "tool", "developer", "bot"]) | json_values,
    "content": st.text(max_size=20) | st.lists(st.fixed_dictionaries({"type": st.just("text"),
                                                                        "text": st.text(max_size=8)})) | json_values,
    "name": json_values, "tool_calls": json_values})
SAMPLING = {"temperature": st.floats() | json_values, "top_p": st.floats() | json_values,
            "top_k": st.integers(-5, 100) | json_values, "seed": st.integers() | json_values,
            "stream": st.booleans() | json_values, "stop": st.text(max_size=4) | json_values,
            "n": st.integers(-1, 3) | json_values, "stream_options": json_values,
            "presence_penalty": json_values, "frequency_penalty": json_values, "repetition_penalty": json_values,
            "max_completion_tokens": max_tokens, "logprobs": json_values, "response_format": json_values}
chat = st.fixed_dictionaries({"model": st.just(MODEL) | json_values, "max_tokens": max_tokens,
                              "messages": st.lists(message, max_size=3) | json_values}, optional=SAMPLING)
completion = st.fixed_dictionaries({"model": st.just(MODEL) | json_values, "max_tokens": max_tokens,
                                    "prompt": st.text(max_size=20) | st.lists(st.integers(-3, 2000), max_size=5)
                                    | json_values}, optional=SAMPLING)
bodies = (chat.map(json.dumps) | completion.map(json.dumps) | json_values.map(json.dumps)
          | st.binary(max_size=120)).map(lambda b: b if isinstance(b, bytes) else b.encode("utf-8", "surrogatepass"))


@pytest.fixture(scope="module")
def server(api_server):
    return api_server


def send(server, path: str, body: bytes, ctype: str | None = "application/json", method: str = "POST"):
    body = body.replace(json.dumps(MODEL).encode(), json.dumps(server.backend.name).encode())
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if ctype else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read()
    finally:
        conn.close()


def assert_answer_is_sound(status: int, ctype: str, data: bytes) -> None:
    assert status < 500, data[:500]
    if status >= 400:
        error = json.loads(data)["error"]
        assert error["message"] and set(error) == {"message", "type", "param", "code"}, error
    elif ctype.startswith("text/event-stream"):
        assert data.rstrip().endswith(b"data: [DONE]"), data[-300:]
        assert b'"server_error"' not in data, data[-500:]
    else:
        assert json.loads(data)["choices"], data[:300]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture], database=None)
@given(path=st.sampled_from(PATHS), body=bodies,
       ctype=st.sampled_from(["application/json"] * 6 + ["application/json; charset=utf-8", "text/plain", None]))
def test_any_request_body_gets_a_sound_answer(server, path, body, ctype):
    assert_answer_is_sound(*send(server, path, body, ctype))


def _malformed(rng: random.Random, name: str) -> tuple[str, str, bytes, str | None]:
    """One of many broken requests: bad JSON, wrong shapes, wrong types, wrong paths, methods, encodings."""
    good = {"model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    kind = rng.randrange(8)
    if kind == 0:
        body = json.dumps(good)[: rng.randrange(1, 40)].encode()            # cut short
    elif kind == 1:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))  # random bytes
    elif kind == 2:
        field, values = rng.choice([("messages", [None, -1, "x", {}, [], [[]], [None], [{"role": 5}]]),
                                    ("max_tokens", [-1, 0, "x", [], {}, 10**9]),
                                    ("temperature", [-1, "hot", [], {}]), ("top_p", [-0.5, 7, "x"]),
                                    ("model", [None, 5, "no-such-model"]), ("seed", ["x", [], {}])])
        body = json.dumps(dict(good, **{field: rng.choice(values)})).encode()
    elif kind == 3:
        body = ("[" * rng.randrange(1, 5000)).encode()                      # deep nesting
    elif kind == 4:
        body = json.dumps({"messages": [{"role": "user", "content": {"nested": ["x"] * 3}}]}).encode()
    elif kind == 5:
        return "POST", rng.choice(["/", "/v1", "/v1/chat", "/v1/models/x", "/%00"]), b"{}", "application/json"
    elif kind == 6:
        return rng.choice(["PUT", "DELETE", "PATCH"]), rng.choice(PATHS), b"{}", "application/json"
    else:
        return "POST", rng.choice(PATHS), json.dumps(good).encode(), rng.choice(["text/html", "", None])
    return "POST", rng.choice(PATHS), body, "application/json"


@pytest.mark.slow
def test_the_server_survives_a_thousand_malformed_requests_and_still_answers(server):
    rng = random.Random(1234)
    statuses = {}
    for _ in range(1000):
        method, path, body, ctype = _malformed(rng, server.backend.name)
        status, rtype, data = send(server, path, body, ctype, method)
        assert 400 <= status < 500, (method, path, body[:100], status, data[:300])
        assert_answer_is_sound(status, rtype, data)
        statuses[status] = statuses.get(status, 0) + 1
    # raw garbage on the socket as well
    for _ in range(20):
        with socket.create_connection(server.server_address[:2], timeout=30) as sock:
            sock.sendall(bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 200))) + b"\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(65536):
                pass
    good = {"model": server.backend.name, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    status, _, data = send(server, "/v1/chat/completions", json.dumps(good).encode())
    assert status == 200 and json.loads(data)["choices"][0]["message"]["role"] == "assistant"
    assert len(statuses) >= 3, statuses  # the mix really exercised different refusals
