"""`/v1/completions` with `echo`, `logprobs`, `max_tokens: 0` and batches of prompts, as OpenAI's legacy API (and
lm-evaluation-harness's `local-completions`) use them; on the real server over the tiny checkpoint."""
from __future__ import annotations

import http.client
import json

import pytest

from tests.test_serve import client, server  # noqa: F401 (fixtures: the server over the tiny checkpoint)

PROMPT = "Once upon a time, 小明"


def post(server, body: dict) -> tuple[int, dict]:
    body = {"model": server.backend.name, **body}
    conn = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    conn.close()
    return resp.status, data


def test_echo_with_max_tokens_zero_scores_the_prompt_as_the_model_does(client, server):
    resp = client.completions.create(model=server.backend.name, prompt=PROMPT, echo=True, logprobs=3, max_tokens=0)
    choice, backend = resp.choices[0], server.backend
    lp, ids = choice.logprobs, backend.tokenize(PROMPT)
    assert choice.text == PROMPT and resp.usage.completion_tokens == 0 and resp.usage.prompt_tokens == len(ids)
    assert "".join(lp.tokens) == PROMPT and len(lp.tokens) == len(ids)
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.token_logprobs[1:] == pytest.approx(backend.score(ids), abs=1e-4)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(ids))]
    for chosen, top in zip(lp.token_logprobs[1:], lp.top_logprobs[1:]):
        assert 1 <= len(top) <= 4 and chosen in top.values()  # the top 3, plus the token itself
        assert all(v <= 0 for v in top.values())


def test_greedy_completion_logprobs_are_each_steps_maximum(server):
    status, body = post(server, {"prompt": PROMPT, "max_tokens": 6, "temperature": 0, "logprobs": 2})
    choice = body["choices"][0]
    lp = choice["logprobs"]
    assert status == 200 and "".join(lp["tokens"]) == choice["text"]
    assert lp["text_offset"][0] == len(PROMPT)  # offsets count from the prompt's start, as OpenAI's do
    assert None not in lp["token_logprobs"]
    for chosen, top in zip(lp["token_logprobs"], lp["top_logprobs"]):
        assert chosen == pytest.approx(max(top.values()), abs=1e-5)  # lm-eval's is_greedy test


def test_echo_with_one_new_token_as_lm_eval_sends_it(server):
    ids = server.backend.tokenize(PROMPT)
    status, body = post(server, {"prompt": [ids], "max_tokens": 1, "temperature": 0, "logprobs": 1, "echo": True,
                                 "seed": 1234})
    lp = body["choices"][0]["logprobs"]
    assert status == 200 and len(lp["token_logprobs"]) == len(ids) + 1
    assert lp["token_logprobs"][1:len(ids)] == pytest.approx(server.backend.score(ids), abs=1e-4)


def test_a_batch_answers_each_prompt_as_alone_in_order(server):
    prompts = ["hello", PROMPT, "1 + 1 ="]
    kw = {"max_tokens": 4, "temperature": 0, "logprobs": 0, "echo": True}
    status, batch = post(server, {"prompt": prompts, **kw})
    assert status == 200 and [c["index"] for c in batch["choices"]] == [0, 1, 2]
    for prompt, choice in zip(prompts, batch["choices"]):
        alone = post(server, {"prompt": prompt, **kw})[1]["choices"][0]
        assert choice["text"] == alone["text"] and choice["text"].startswith(prompt)
        assert choice["logprobs"]["token_logprobs"][1:] == pytest.approx(alone["logprobs"]["token_logprobs"][1:],
                                                                         abs=1e-4)
    ids_batch = post(server, {"prompt": [server.backend.tokenize(p) for p in prompts], **kw})[1]
    assert [c["text"] for c in ids_batch["choices"]] == [c["text"] for c in batch["choices"]]
    assert batch["usage"]["prompt_tokens"] == sum(len(server.backend.tokenize(p)) for p in prompts)


@pytest.mark.parametrize("extra", [
    {"logprobs": -1}, {"logprobs": 21}, {"logprobs": "5"}, {"logprobs": True}, {"echo": "yes"},
    {"max_tokens": -1}, {"prompt": []}, {"prompt": [[1, 2], [999999]]}, {"prompt": [[1], "a"]},
    {"prompt": ["a"] * 129}, {"stream": True, "logprobs": 1}, {"stream": True, "prompt": ["a", "b"]},
])
def test_malformed_logprob_requests_get_400(server, extra):
    status, body = post(server, {"prompt": "hi", "max_tokens": 1, **extra})
    assert status == 400 and body["error"]["message"], body


def test_a_gguf_server_reports_the_same_prompt_logprobs_as_llama_cpp_scores(tiny_gguf):
    from core.infer.backend import open_backend
    from core.serve import make_server

    with open_backend(tiny_gguf, n_threads=1) as backend:
        srv = make_server(backend, "127.0.0.1", 0)
        srv.start_background()
        try:
            status, body = post(srv, {"prompt": PROMPT, "echo": True, "logprobs": 2, "max_tokens": 0})
        finally:
            srv.shutdown()
            srv.server_close()
        lp = body["choices"][0]["logprobs"]
        assert status == 200 and "".join(lp["tokens"]) == PROMPT
        assert lp["token_logprobs"][1:] == pytest.approx(backend.score(backend.tokenize(PROMPT)), abs=1e-4)
        assert all(max(top.values()) >= chosen - 1e-6 for chosen, top in zip(lp["token_logprobs"][1:],
                                                                            lp["top_logprobs"][1:]))
