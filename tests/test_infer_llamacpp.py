"""The llama.cpp backend against the torch backend on the same tiny model: same prompt ids, same text."""
from __future__ import annotations

import io
import sys

import pytest

from core.infer.chat_output import parse_chat_output
from core.infer.sampling import SamplingParams

pytestmark = pytest.mark.usefixtures("torch_single_thread")
MESSAGES = [{"role": "user", "content": "你好，世界🙂 Tell me a story."}]
GREEDY = SamplingParams.greedy_params(40, stop_token_ids=[])


@pytest.fixture(scope="module")
def infer_gguf(infer_checkpoint, tmp_path_factory):
    """An f32 GGUF of `infer_checkpoint` (its varied greedy text makes the comparison meaningful)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install llama-cpp-python)")
    export = pytest.importorskip("core.export.gguf", reason="core.export (GGUF writer) is not in this build")
    out = tmp_path_factory.mktemp("infer-gguf") / "tiny-f32.gguf"
    export.export_gguf(infer_checkpoint, out, "f32", check=False, modelfile=False)
    return out


@pytest.fixture(scope="module")
def pair(infer_checkpoint, infer_gguf):
    from core.infer.backend import TorchBackend, open_backend

    torch_backend, llama_backend = TorchBackend(infer_checkpoint), open_backend(infer_gguf, n_threads=1)
    yield torch_backend, llama_backend
    llama_backend.close()
    torch_backend.close()


def test_open_backend_opens_gguf_with_llama_cpp(pair, infer_gguf):
    from core.infer.llamacpp import LlamaCppBackend

    _, llama_backend = pair
    assert isinstance(llama_backend, LlamaCppBackend) and llama_backend.name == "tiny-f32"


def test_same_chat_prompt_ids_on_both_backends(pair):
    t, g = pair
    assert t.render_chat(MESSAGES) == g.render_chat(MESSAGES)  # the GGUF carries our template
    assert t.tokenize(t.render_chat(MESSAGES)) == g.tokenize(g.render_chat(MESSAGES))


def test_greedy_text_and_pieces_are_identical(pair):
    t, g = pair
    a, b = list(t.chat_stream(MESSAGES, GREEDY)), list(g.chat_stream(MESSAGES, GREEDY))
    assert "".join(a) == "".join(b) and len("".join(a)) > 20
    assert a == b  # same incremental detokenization, piece for piece
    assert t.usage.completion_tokens == g.usage.completion_tokens == 40
    assert t.finish_reason == g.finish_reason == "length"


def test_seeded_sampling_and_stops_agree(pair):
    t, g = pair
    params = SamplingParams(max_new_tokens=32, temperature=1.0, top_p=0.9, top_k=40, seed=3, stop_token_ids=[])
    assert t.chat(MESSAGES, params) == g.chat(MESSAGES, params)
    full = t.chat(MESSAGES, GREEDY)
    stop = full[15:18]
    with_stop = GREEDY.model_copy(update={"stop": [stop]})
    assert t.chat(MESSAGES, with_stop) == g.chat(MESSAGES, with_stop) == full[:full.find(stop)]
    assert t.finish_reason == g.finish_reason == "stop"


def test_token_log_probabilities_agree(pair):
    t, g = pair
    ids = t.tokenize("The quick brown fox 床前明月光")
    a, b = t.score(ids), g.score(ids)
    assert len(a) == len(b) == len(ids) - 1
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3


LONG_TEXT = ("Question: Which planet is known as the red planet?\nAnswer: Mars, the fourth planet from the Sun, "
             "whose iron oxide dust gives it a reddish look. 床前明月光，疑是地上霜。举头望明月，低头思故乡。") * 2


def test_a_long_continuation_scores_like_torch_in_one_evaluation(pair, infer_gguf, monkeypatch):
    """Every position's logits come from one llama.cpp batch (or n_batch-sized chunks), and each per-token
    log-prob equals torch's for the f32 export: the batched read neither shifts nor mixes rows."""
    import core.infer.llamacpp as llamacpp
    from core.infer.backend import open_backend

    t, g = pair
    ids = t.tokenize(LONG_TEXT)
    calls = []
    real = llamacpp.eval_all_logits
    monkeypatch.setattr(llamacpp, "eval_all_logits", lambda llm, tokens, n_past: calls.append(len(tokens))
                        or real(llm, tokens, n_past))
    g.chat(MESSAGES, GREEDY)  # whatever generation left in the KV cache must not leak into the scores
    want, got = t.score(ids), g.score(ids)
    assert len(ids) > 150 and calls == [len(ids) - 1]
    assert len(got) == len(want) and max(abs(x - y) for x, y in zip(want, got)) < 2e-4
    with open_backend(infer_gguf, n_threads=1, n_batch=16) as chunked:  # 16 tokens per llama_decode call
        assert max(abs(x - y) for x, y in zip(want, chunked.score(ids))) < 2e-4


def test_options_sharing_a_question_evaluate_only_from_where_they_differ(pair, monkeypatch):
    """The second option of an item reuses the first's KV cells and log-probs for the question (a sequence
    shorter than the last reuses what it shares too); the scores stay torch's, also after a generation."""
    import core.infer.llamacpp as llamacpp

    t, g = pair
    question = t.tokenize("Question: Which is a metal?\nAnswer:")
    options = [question + t.tokenize(" iron and steel"), question + t.tokenize(" wood"), question[:5]]
    calls = []
    real = llamacpp.eval_all_logits
    monkeypatch.setattr(llamacpp, "eval_all_logits", lambda llm, tokens, n_past: calls.append(n_past)
                        or real(llm, tokens, n_past))
    g.score(t.tokenize("an unrelated item"))
    for ids in options:
        assert max(abs(x - y) for x, y in zip(t.score(ids), g.score(ids))) < 2e-4
    assert calls[1:] == [0, len(question) - 1, 4]  # the second option does not pay for the question again
    g.chat(MESSAGES, SamplingParams.greedy_params(3, stop_token_ids=[]))  # generation rewrites the KV cache
    for ids in options[1::-1]:
        assert max(abs(x - y) for x, y in zip(t.score(ids), g.score(ids))) < 2e-4


def test_exporters_tiny_gguf_decodes_like_its_checkpoint(tiny_checkpoint, tiny_gguf):
    from core.infer.backend import open_backend

    with open_backend(tiny_checkpoint) as t, open_backend(tiny_gguf, n_threads=1) as g:
        assert t.chat(MESSAGES, GREEDY) == g.chat(MESSAGES, GREEDY)
        assert t.complete("Once upon a time", GREEDY) == g.complete("Once upon a time", GREEDY)


def test_chat_cli_runs_a_gguf(infer_gguf, pair, monkeypatch, capsys):
    from core.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO("你好，世界🙂 Tell me a story.\n/quit\n"))
    assert main(["chat", "--model", str(infer_gguf), "--temperature", "0", "--max-new-tokens", "40"]) == 0
    expected = parse_chat_output(pair[0].chat(MESSAGES, SamplingParams.greedy_params(40))).content
    assert capsys.readouterr().out == expected + "\n"


def test_server_serves_a_gguf(pair):
    openai = pytest.importorskip("openai")
    from core.serve import make_server

    _, g = pair
    server = make_server(g, "127.0.0.1", 0)
    server.start_background()
    try:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=30)
        resp = client.chat.completions.create(model=g.name, messages=MESSAGES, max_tokens=12, temperature=0)
        expected = parse_chat_output(g.chat(MESSAGES, SamplingParams.greedy_params(12)))
        assert resp.choices[0].message.content == (expected.content or None)
        assert server.engine.__class__.__name__ == "SerialEngine"  # llama.cpp: one request at a time
        assert resp.usage.completion_tokens >= 1
    finally:
        server.shutdown()
        server.server_close()
