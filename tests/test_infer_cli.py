"""`minimind chat` with piped stdin, `minimind eval` (JSONL out, speed, perplexity), backend selection."""
from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli import main
from core.infer.backend import TorchBackend, open_backend
from core.infer.sampling import SamplingParams

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def backend(infer_checkpoint):
    b = TorchBackend(infer_checkpoint)
    yield b
    b.close()


@pytest.mark.slow
def test_chat_reads_piped_stdin_and_streams_answers(infer_checkpoint, backend):
    run_dir = infer_checkpoint.parent.parent  # the run dir resolves to its newest checkpoint
    stdin = "你好\n/system Answer briefly.\nhi\n/unknown\n/reset\nhi\n/quit\nnever read\n"
    proc = subprocess.run([sys.executable, "-m", "core", "chat", "--model", str(run_dir), "--temperature", "0",
                           "--max-new-tokens", "8"], input=stdin, capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    greedy = SamplingParams(max_new_tokens=8, temperature=0, top_p=0.85, top_k=50)
    first = backend.chat([{"role": "user", "content": "你好"}], greedy)
    system = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "hi"}]
    second = backend.chat(system, greedy)
    assert proc.stdout == f"{first}\n{second}\n{second}\n"  # /reset keeps the system prompt, forgets turns
    assert "unknown command" in proc.stderr and "conversation cleared" in proc.stderr


def test_chat_keeps_the_conversation_between_turns(infer_checkpoint, backend, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\nb\n"))
    assert main(["chat", "--model", str(infer_checkpoint), "--temperature", "0", "--max-new-tokens", "6"]) == 0
    out = capsys.readouterr().out.split("\n")
    greedy = SamplingParams(max_new_tokens=6, temperature=0)
    first = backend.chat([{"role": "user", "content": "a"}], greedy)
    second = backend.chat([{"role": "user", "content": "a"}, {"role": "assistant", "content": first},
                           {"role": "user", "content": "b"}], greedy)
    assert out[:2] == [first, second]


def test_eval_writes_completions_speed_and_perplexity(infer_checkpoint, backend, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "为什么天空是蓝色的"}, ensure_ascii=False) + "\n"
                       + json.dumps({"conversations": [{"role": "user", "content": "hi"},
                                                       {"role": "assistant", "content": "ignored"}]}) + "\n",
                       encoding="utf-8")
    texts = ["The quick brown fox jumps over the lazy dog.", "床前明月光，疑是地上霜。"]
    ppl = tmp_path / "ppl.jsonl"
    ppl.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / "eval.jsonl"
    assert main(["eval", "--model", str(infer_checkpoint), "--prompts-file", str(prompts), "--ppl-data", str(ppl),
                 "--max-new-tokens", "5", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r.get("prompt") for r in rows[:2]] == ["为什么天空是蓝色的", "hi"]
    greedy = SamplingParams(max_new_tokens=5, temperature=0)
    assert rows[0]["completion"] == backend.chat([{"role": "user", "content": "为什么天空是蓝色的"}], greedy)
    assert all(r["completion_tokens"] >= 1 and r["prompt_tokens"] > 5 for r in rows[:2])
    summary = rows[2]
    assert summary["summary"] and summary["prompts"] == 2 and summary["ppl_texts"] == 2
    # perplexity = exp(mean NLL) recomputed from the model directly
    nll, n = 0.0, 0
    for t in texts:
        lp = backend.score(backend.tokenize(t))
        nll, n = nll - sum(lp), n + len(lp)
    assert summary["ppl_tokens"] == n and math.isclose(summary["perplexity"], math.exp(nll / n), rel_tol=1e-3)


def test_eval_reports_the_bad_line_of_a_prompts_file(infer_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nothing": 1}\n', encoding="utf-8")
    assert main(["eval", "--model", str(infer_checkpoint), "--prompts-file", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err


def test_bad_model_path_and_bad_sampling_are_user_errors(tmp_path, infer_checkpoint, capsys):
    assert main(["chat", "--model", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["chat", "--model", str(infer_checkpoint), "--temperature", "-1"]) == 2
    assert "--temperature" in capsys.readouterr().err


def test_open_backend_picks_by_path(infer_checkpoint, tmp_path):
    with open_backend(infer_checkpoint.parent.parent) as b:  # run dir
        assert isinstance(b, TorchBackend) and b.name == "tiny-run"
        assert b.path == infer_checkpoint
    with open_backend(infer_checkpoint) as b:
        assert b.name == "tiny-run/step-000001"
    with pytest.raises(FileNotFoundError, match="no such GGUF"):
        open_backend(tmp_path / "model.gguf")


def test_backend_usage_counts_after_a_call(backend):
    messages = [{"role": "user", "content": "hello"}]
    text = "".join(backend.chat_stream(messages, SamplingParams.greedy_params(7, stop_token_ids=[])))
    assert backend.usage.prompt_tokens == len(backend.tokenize(backend.render_chat(messages)))
    assert backend.usage.completion_tokens == 7 and backend.finish_reason == "length" and text


def test_chat_think_flag_opens_the_reasoning_block(infer_checkpoint, monkeypatch, capsys):
    seen = []
    original = TorchBackend.render_chat
    monkeypatch.setattr(TorchBackend, "render_chat",
                        lambda self, m, tools=None, think=None: seen.append(think) or original(self, m, tools, think))
    for flag, expected in (("--think", True), ("--no-think", False)):
        monkeypatch.setattr(sys, "stdin", io.StringIO("hi\n"))
        assert main(["chat", "--model", str(infer_checkpoint), "--temperature", "0", "--max-new-tokens", "3",
                     flag]) == 0
        assert seen[-1] is expected
    assert original(TorchBackend(infer_checkpoint), [{"role": "user", "content": "hi"}],
                    think=True).endswith("<think>\n")


def test_chat_shows_reasoning_and_tool_calls_and_runs_built_in_tools(tiny_tokenizer, monkeypatch, capsys):
    from core.cli import infer_cmd
    from tests.scripted_backend import ScriptedReplayBackend

    backend = ScriptedReplayBackend(tiny_tokenizer, [
        'need math\n</think>\n\n<tool_call>\n{"name": "calculate_math", "arguments": '   # --think: the prompt
        '{"expression": "6*7"}}\n</tool_call>', "easy\n</think>\n\nIt is 42."])                # opened <think>
    monkeypatch.setattr(infer_cmd, "open_backend_from_args", lambda args, dtype=None: backend)
    monkeypatch.setattr(sys, "stdin", io.StringIO("what is 6*7?\n"))
    assert main(["chat", "--model", "scripted", "--tools", "calculate_math", "--think"]) == 0
    out, err = capsys.readouterr()
    assert out == "\nIt is 42.\n"  # content only on stdout: none in the calling answer, then the reply
    assert "need math" in err and "easy" in err and "</think>" not in err and '[tool call] calculate_math({"expression": "6*7"})' in err
    assert '[tool result] {"result": 42}' in err
    assert "calculate_math" in backend.prompts[0] and '{"result": 42}' in backend.prompts[1]


def test_chat_refuses_unknown_tools(infer_checkpoint, capsys):
    assert main(["chat", "--model", str(infer_checkpoint), "--tools", "rm_rf"]) != 0
    assert "unknown tool(s) rm_rf" in capsys.readouterr().err
