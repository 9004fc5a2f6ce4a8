"""The server against one client trying to exhaust it or reach it from where it should not (issue 28's review):
oversized scoring, abandoned requests, a full queue, slowloris connections, foreign Host headers, huge integers,
missing or wrong API keys.

Real servers on 127.0.0.1 (port 0), real sockets, the official `openai` client where a client is needed. Most
use `EndlessBackend` (tests/scripted_backend.py), whose requests never end by themselves: cancellation and a
full queue are then facts to read from the engine's counters, not races against the clock. Waits poll a
condition with a generous bound; nothing asserts how long anything took.
"""
from __future__ import annotations

import http.client
import json
import socket
import time

import pytest

openai = pytest.importorskip("openai", reason="the server tests use the official openai client (pip install openai)")

WAIT_S = 30  # bound on every wait for a condition; a healthy run needs a fraction of it


@pytest.fixture
def serve(tiny_tokenizer):
    """start(backend=None, **ServerOptions fields) -> a running server (an EndlessBackend by default)."""
    from core.serve import ServerOptions, make_server
    from tests.scripted_backend import EndlessBackend

    servers = []

    def start(backend=None, **options):
        srv = make_server(backend or EndlessBackend(tiny_tokenizer), "127.0.0.1", 0, options=ServerOptions(**options))
        srv.start_background()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {WAIT_S} s for {what}"
        time.sleep(0.01)


def post(srv, path: str, body: dict | bytes, headers: dict | None = None):
    """(status, headers, JSON body) of one request over a fresh connection."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=WAIT_S)
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.headers, json.loads(resp.read())
    finally:
        conn.close()


def chat(srv, **overrides) -> dict:
    return {"model": srv.backend.name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
            **overrides}


def send_without_reading(srv, path: str, body: dict) -> socket.socket:
    """A whole request sent on a raw socket whose answer is never read."""
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    sock = socket.create_connection(srv.server_address[:2], timeout=WAIT_S)
    sock.sendall(head + data)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Reads until the server closes the connection (True) or WAIT_S passes with it open (False)."""
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


# ---- oversized scoring --------------------------------------------------------------------------------------
def test_a_completions_batch_scoring_too_many_tokens_is_refused_naming_the_cap(api_server):
    """128 prompts of 500 token ids with echo and logprobs=20 (the review's request, at this model's context)."""
    body = {"model": api_server.backend.name, "prompt": [[5 + i % 50] * 500 for i in range(128)],
            "echo": True, "logprobs": 20, "max_tokens": 0}
    status, _, answer = post(api_server, "/v1/completions", body)
    error = answer["error"]
    assert status == 400 and error["code"] == "scored_tokens_exceeded" and error["param"] == "prompt"
    assert "262,144" in error["message"] and "--max-scored-tokens" in error["message"]


def test_the_scored_token_cap_counts_prompts_completions_and_logprobs(infer_checkpoint, serve):
    from core.infer.backend import TorchBackend

    srv = serve(TorchBackend(infer_checkpoint), max_scored_tokens=120)
    ids = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    ask = lambda **kw: post(srv, "/v1/completions", {"model": srv.backend.name, "temperature": 0, **kw})  # noqa: E731
    assert ask(prompt=[ids] * 6, echo=True, logprobs=1, max_tokens=0)[0] == 200  # 60 positions x 2 = 120
    assert ask(prompt=[ids] * 6, echo=True, logprobs=1, max_tokens=1)[0] == 400  # 66 x 2
    assert ask(prompt=[ids] * 3, logprobs=3, max_tokens=5)[0] == 400  # (30 + 15) x 4: not echoed, still scored
    assert ask(prompt=[ids] * 12, echo=True, max_tokens=0)[0] == 200  # no logprobs: nothing is scored


# ---- abandoned requests and a full queue ----------------------------------------------------------------------
@pytest.mark.parametrize("path,body,per_request", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, 1),
    ("/v1/completions", {"prompt": ["one", "two"]}, 2),  # a batch: both prompts are dropped
], ids=["chat", "completions"])
def test_non_streamed_requests_whose_clients_hang_up_are_cancelled(serve, path, body, per_request):
    srv = serve()
    body = {"model": srv.backend.name, "max_tokens": 1_000_000, **body}
    socks = [send_without_reading(srv, path, body) for _ in range(3)]
    wanted = 3 * per_request
    wait_for(lambda: srv.engine.pending == wanted, "the requests to reach the engine")
    for sock in socks:
        sock.close()
    wait_for(lambda: srv.engine.pending == 0, "the engine to drop the abandoned requests")
    assert srv.engine.cancelled_requests == wanted  # one was generating, the others waiting
    status, _, answer = post(srv, "/v1/chat/completions", chat(srv))
    assert status == 200 and answer["choices"][0]["finish_reason"] == "length"


def test_a_full_queue_answers_429_with_retry_after_and_frees_up_when_clients_leave(serve):
    srv = serve(max_queue=2)
    streams = []
    for _ in range(2):  # a streamed answer's headers come once its request is in the engine
        conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=WAIT_S)
        conn.request("POST", "/v1/chat/completions", json.dumps(chat(srv, max_tokens=1_000_000, stream=True)),
                     {"Content-Type": "application/json"})
        assert conn.getresponse().status == 200
        streams.append(conn)
    client = openai.OpenAI(base_url=srv.url, api_key="unused", max_retries=0, timeout=WAIT_S)
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model=srv.backend.name, messages=[{"role": "user", "content": "x"}],
                                       max_tokens=2)
    assert refused.value.response.headers["retry-after"] == "1"
    assert refused.value.response.json()["error"]["code"] == "queue_full"
    status, _, answer = post(srv, "/v1/completions", {"model": srv.backend.name, "prompt": ["a", "b", "c"],
                                                      "max_tokens": 1})
    assert status == 429 and srv.engine.pending == 2  # a batch that does not fit is refused whole
    for conn in streams:
        conn.close()
    wait_for(lambda: srv.engine.pending == 0, "the abandoned streams to leave the engine")
    reply = client.chat.completions.create(model=srv.backend.name, messages=[{"role": "user", "content": "x"}],
                                           max_tokens=2)
    assert reply.choices[0].finish_reason == "length"


# ---- slow and idle connections --------------------------------------------------------------------------------
@pytest.mark.parametrize("sent", [
    b"",                                                                        # connects, says nothing
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty",     # headers cut short (slowloris)
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{\"model\": ",                                # body cut short
], ids=["silent", "half-headers", "half-body"])
def test_a_request_that_does_not_arrive_whole_in_time_has_its_connection_closed(serve, sent):
    srv = serve(read_timeout=0.5)
    with socket.create_connection(srv.server_address[:2], timeout=WAIT_S) as sock:
        sock.sendall(sent)
        assert closed_by_server(sock)
    assert srv.http_protocol.slow_requests_closed == 1
    assert post(srv, "/v1/chat/completions", chat(srv))[0] == 200  # requests sent whole are unaffected


def test_an_idle_kept_alive_connection_is_closed(serve):
    srv = serve(keep_alive_timeout=1)
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=WAIT_S)
    conn.request("GET", "/health")
    assert conn.getresponse().read() and conn.sock is not None  # HTTP/1.1: the connection stays open
    assert closed_by_server(conn.sock)
    conn.close()


def test_connections_beyond_the_cap_get_503(serve):
    srv = serve(max_connections=2)
    idle = [socket.create_connection(srv.server_address[:2], timeout=WAIT_S) for _ in range(2)]
    try:
        conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=WAIT_S)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 503  # uvicorn's own answer (plain text)
        conn.close()
    finally:
        for sock in idle:
            sock.close()


# ---- who may talk to it ---------------------------------------------------------------------------------------
def get(srv, path: str, headers: dict) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=WAIT_S)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8998", "127.0.0.1.evil.example", "localhost.",
                                  "", "127.0.0.1:x"])
def test_a_foreign_host_header_is_refused_dns_rebinding(serve, host):
    srv = serve()
    for path in ("/v1/models", "/health"):
        status, body = get(srv, path, {"Host": host})
        assert status == 421 and body["error"]["code"] == "host_not_allowed", (path, body)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8998", "localhost:1", "LOCALHOST", "[::1]:8998"])
def test_loopback_host_names_are_answered(serve, host):
    assert get(serve(), "/v1/models", {"Host": host})[0] == 200


def test_allowed_hosts_extend_the_loopback_names(serve):
    srv = serve(allow_hosts=("studio.lan",))
    assert get(srv, "/v1/models", {"Host": "Studio.LAN:8998"})[0] == 200
    assert get(srv, "/v1/models", {"Host": "other.lan"})[0] == 421
    assert get(serve(allow_hosts=("*",)), "/v1/models", {"Host": "anything.example"})[0] == 200


def test_the_bound_address_is_answered_when_it_is_a_literal_ip():
    from core.config.serve import ServerOptions
    from core.serve.access import accepted_hosts

    assert "192.168.1.5" in accepted_hosts(ServerOptions(), "192.168.1.5")  # a literal cannot be re-pointed
    assert "[fe80::1]" in accepted_hosts(ServerOptions(), "fe80::1")
    assert accepted_hosts(ServerOptions(), "0.0.0.0") == {"127.0.0.1", "localhost", "[::1]"}
    assert accepted_hosts(ServerOptions(allow_hosts=("*",)), "0.0.0.0") is None


def test_serve_flags_become_server_options_and_bad_values_name_their_flag():
    from core.cli import CLIError, build_parser
    from core.cli.serve_cmd import options_from_args

    parse = lambda *flags: build_parser().parse_args(["serve", "--model", "m", *flags])  # noqa: E731
    options = options_from_args(parse("--api-key", "k", "--allow-host", "Studio.lan", "--allow-host", "10.0.0.2",
                                      "--max-queue", "3", "--read-timeout", "2.5"))
    assert options.api_key == "k" and options.allow_hosts == ("studio.lan", "10.0.0.2")
    assert options.max_queue == 3 and options.read_timeout == 2.5 and options.max_connections == 1024
    with pytest.raises(CLIError, match="^--max-queue: "):
        options_from_args(parse("--max-queue", "0"))
    with pytest.raises(CLIError, match="^--allow-host: "):
        options_from_args(parse("--allow-host", "http://x/"))


KEY = "sk-minimind-test"


def test_a_missing_or_wrong_api_key_gets_401_in_openai_shape(serve):
    srv = serve(api_key=KEY)
    status, body = get(srv, "/v1/models", {})
    assert status == 401 and body["error"]["code"] == "invalid_api_key" and "Bearer" in body["error"]["message"]
    for header in (f"Bearer {KEY}x", f"Basic {KEY}", KEY, "Bearer"):
        assert get(srv, "/v1/models", {"Authorization": header})[0] == 401, header
    wrong = openai.OpenAI(base_url=srv.url, api_key="sk-wrong", max_retries=0, timeout=WAIT_S)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.chat.completions.create(model=srv.backend.name, messages=[{"role": "user", "content": "x"}])
    assert refused.value.status_code == 401 and refused.value.response.headers["www-authenticate"] == "Bearer"
    assert srv.engine.pending == 0 and srv.backend.prompts == []  # refused before any work


def test_the_right_api_key_is_served_and_health_stays_open(serve):
    srv = serve(api_key=KEY)
    client = openai.OpenAI(base_url=srv.url, api_key=KEY, max_retries=0, timeout=WAIT_S)
    reply = client.chat.completions.create(model=srv.backend.name, messages=[{"role": "user", "content": "x"}],
                                           max_tokens=2)
    assert reply.choices[0].message.content == "aa"
    assert get(srv, "/health", {}) == (200, {"status": "ok", "model": srv.backend.name})


def test_eval_tools_sends_the_api_key_from_its_flag_or_the_environment(serve, tmp_path, monkeypatch, capsys):
    from core.cli import main
    from tests.fixtures.rl import write_agent_tasks

    srv = serve(api_key=KEY)
    cases = str(write_agent_tasks(tmp_path / "cases.jsonl", pairs=((3, 4),)))
    run = ["eval", "tools", "--endpoint", srv.url, "--cases", cases, "--max-turns", "1", "--max-new-tokens", "2",
           "--no-baseline"]
    monkeypatch.delenv("MINIMIND_API_KEY", raising=False)
    assert main(run) == 2 and "refused the API key (401)" in capsys.readouterr().err
    assert main(run + ["--api-key", KEY]) == 0
    monkeypatch.setenv("MINIMIND_API_KEY", KEY)
    assert main(run) == 0 and "total" in capsys.readouterr().out


# ---- huge integers --------------------------------------------------------------------------------------------
HUGE = "9" * 5000  # over Python's 4,300-digit limit for int <-> str


@pytest.mark.parametrize("path,body,param", [
    ("/v1/chat/completions", '{"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": %s}',
     "max_tokens"),
    ("/v1/chat/completions", '{"model": "M", "messages": [{"role": "user", "content": "hi"}], "seed": -%s}', "seed"),
    ("/v1/completions", '{"model": "M", "prompt": [[1, 2], [3, %s]]}', "prompt.1.1"),
    ("/v1/chat/completions", '{"model": "M", "messages": [{"role": "assistant", "tool_calls": [{"function": '
     '{"name": "f", "arguments": {"x": %s}}}]}]}', "messages.0.tool_calls.0.function.arguments.x"),
    ("/v1/completions", '[%s]', "0"),
])
def test_an_integer_over_the_digit_limit_gets_400_naming_its_field(serve, path, body, param):
    srv = serve()
    status, _, answer = post(srv, path, (body % HUGE).replace('"M"', json.dumps(srv.backend.name)).encode())
    assert status == 400 and answer["error"]["param"] == param, answer
    assert "5,000 digits" in answer["error"]["message"]


def test_a_huge_integer_inside_a_tool_call_arguments_string_is_no_error(serve):
    """Arguments as OpenAI sends them, a JSON string: one that cannot be read as an object is passed on as text."""
    srv = serve()
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": %s}' % HUGE}}
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]
    status, _, answer = post(srv, "/v1/chat/completions", chat(srv, messages=messages))
    assert status == 200 and answer["choices"][0]["message"]["content"] == "aaa"
