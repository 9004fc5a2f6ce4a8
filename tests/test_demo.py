"""`minimind demo`: the whole pipeline through the real trainer CLI, llama.cpp export/parity and chat."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL_FILES = ("sft_tools.jsonl", "agent_rl.jsonl")


def cli_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the tool-use demo data -----------------------------------------------------------------------------------

def test_tool_files_are_generated_with_the_others_and_match_the_shipped_copy(demo_data_dir):
    for name in TOOL_FILES:
        assert (demo_data_dir / name).read_bytes() == (REPO / "resources" / "demo" / name).read_bytes()


def test_every_tool_conversation_validates_and_calls_a_builtin_tool_with_its_real_result(demo_data_dir):
    from core.cli import main
    from core.data import read_records
    from core.tokenizer import normalize_messages
    from core.tools import builtin_registry

    path = demo_data_dir / "sft_tools.jsonl"
    assert main(["data", "check", str(path)]) == 0  # `minimind data check`'s validator, every record
    registry = builtin_registry()
    used, reasoning, chinese, calls = set(), 0, 0, 0
    for rec in read_records(path, "sft"):
        msgs, tools = normalize_messages(rec["conversations"])
        assert {t["function"]["name"] for t in tools} <= set(registry.names())
        for i, m in enumerate(msgs):
            for call in m.get("tool_calls") or []:
                assert msgs[i + 1]["content"] == registry.run(call["name"], call["arguments"])  # executable
                assert "error" not in json.loads(msgs[i + 1]["content"])
                used.add(call["name"])
                calls += 1
        reasoning += any(m.get("reasoning_content") or "<think>" in (m.get("content") or "") for m in msgs)
        chinese += not msgs[1]["content"].isascii()
    assert used == {"calculate_math", "unit_converter"}
    assert calls > 400 and reasoning > 50 and chinese > 100


def test_agent_rl_prompts_carry_ground_truth_and_a_disjoint_held_out_split(demo_data_dir):
    from core.data import detect_kind, read_records
    from core.data.demo import agent_rl_held_out
    from core.tokenizer import normalize_messages
    from core.tools import builtin_registry

    path = demo_data_dir / "agent_rl.jsonl"
    records = list(read_records(path, "agent"))  # `minimind data check`'s validator for agent tasks
    assert detect_kind(path) == "agent" and len(records) == len(lines(path))
    for rec in records:
        msgs, tools = normalize_messages(rec["conversations"])
        assert [m["role"] for m in msgs] == ["system", "user"]
        assert rec["gt"] and all(isinstance(g, (int, float)) for g in rec["gt"])
        assert rec["tool"] in {t["function"]["name"] for t in tools} <= set(builtin_registry().names())
    held = [r for i, r in enumerate(records) if agent_rl_held_out(i)]
    assert len(held) == len(records) // 5
    question = lambda rec: rec["conversations"][1]["content"]  # noqa: E731
    trained = {question(r) for i, r in enumerate(records) if not agent_rl_held_out(i)}
    trained |= {question(r) for r in lines(demo_data_dir / "sft_tools.jsonl")}
    assert not {question(r) for r in held} & trained
    assert any(not question(r).isascii() for r in held) and any(question(r).isascii() for r in held)


@pytest.mark.slow
def test_fast_demo_runs_every_stage_and_reports_its_figures(tmp_path):
    pytest.importorskip("llama_cpp", reason="the demo's export check and chat need llama-cpp-python")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "core", "demo", "--fast", "--threads", "1", "--json",
                           "--out", str(out)], capture_output=True, text=True, env=cli_env(), cwd=tmp_path,
                          timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("1/7 data", "2/7 tokenizer", "3/7 pretrain", "4/7 sft", "5/7 export", "6/7 chat", "7/7 tools"):
        assert stage in proc.stderr  # progress goes to stderr ...
    report = json.loads(proc.stdout)  # ... and stdout carries only the report
    assert report == json.loads((out / "demo_report.json").read_text(encoding="utf-8"))

    assert (out / "tokenizer" / "tokenizer.json").is_file()
    for method in ("pretrain", "sft"):
        stage = report[method]
        assert stage["steps"] == report["plan"][f"{method}_steps"]
        assert (Path(stage["run_dir"]) / "checkpoints" / "latest").is_file()
        assert (Path(stage["run_dir"]) / "events.jsonl").is_file()  # written by the real worker
    assert report["pretrain"]["loss_last"] < report["pretrain"]["loss_first"]
    sft_config = json.loads((out / "configs" / "sft.json").read_text(encoding="utf-8"))
    assert sft_config["init"] == report["pretrain"]["run_dir"]  # SFT continues from the pretrained model

    export = report["export"]
    assert Path(export["file"]).is_file() and export["bytes"] > 0
    assert export["parity"]["passed"] and export["parity"]["tokenizer_match"]
    assert export["modelfile"] and Path(export["modelfile"]).is_file()
    assert [c["prompt"] for c in report["chat"]] == list(report["plan"]["prompts"])
    assert all(c["completion_tokens"] > 0 for c in report["chat"])
    tools = report["tools"]  # measured on the held-out tool prompts, with the tools run and without
    assert tools["prompts"] == report["plan"]["tool_prompts"]
    for rate in ("right_call_rate", "accuracy_with_tools", "accuracy_without_tools"):
        assert 0.0 <= tools[rate] <= 1.0
    assert sft_config["data"]["files"][-1].endswith("sft_tools.jsonl")  # SFT learns the tool conversations


@pytest.mark.slow
@pytest.mark.timeout(2400)  # ~4 min on 2 idle cores; one thread on a busy machine took 12 min
@pytest.mark.skipif(os.environ.get("MINIMIND_FULL_DEMO") != "1",
                    reason="the full demo trains for ~5 minutes on 2 cores; set MINIMIND_FULL_DEMO=1 to run it")
def test_full_demo_model_calls_the_right_tool_on_held_out_prompts(tmp_path):
    pytest.importorskip("llama_cpp", reason="the demo's export check and chat need llama-cpp-python")
    from core.demo import run_demo
    from core.eval.tool_use import ToolCase, evaluate_tool_use
    from core.infer import open_backend
    from core.tools import builtin_registry
    from studio.dialogs.first_run import CHAT_QUESTION, CHAT_ANSWER

    report = run_demo(tmp_path / "demo", say=lambda _: None, threads=1)
    tools = report["tools"]
    assert tools["prompts"] >= 50 and tools["right_call_rate"] >= 0.9
    assert tools["accuracy_with_tools"] > tools["accuracy_without_tools"]  # both measured; the tools help
    # The first-run guide's question, as the Chat pane asks it (no system prompt, the calculator on).
    case = ToolCase([{"role": "user", "content": CHAT_QUESTION}], [CHAT_ANSWER], "calculate_math",
                    builtin_registry().schemas(["calculate_math"]))
    with open_backend(report["export"]["file"]) as llm:
        asked = evaluate_tool_use(llm, [case], without_tools=False)["cases"][0]
    assert asked["right_tool"] and asked["well_formed"] and asked["correct"], asked


def test_a_failing_training_stage_names_itself_and_its_log(tmp_path):
    from core.demo import FAST, DemoError, run_trainer, train_config

    data = tmp_path / "missing.jsonl"  # the worker must stop with its own file error
    cfg = train_config("pretrain", FAST, data, tmp_path / "tok", tmp_path / "runs" / "pretrain", None)
    said: list[str] = []
    with pytest.raises(DemoError) as err:
        run_trainer("pretrain", cfg, tmp_path / "pretrain.json", said.append, threads=1)
    message = str(err.value)
    assert "pretrain training failed" in message
    assert str(tmp_path / "pretrain.log") in message
    assert any("error" in line for line in said)  # the worker's error event was relayed as progress


def test_summary_lists_where_everything_went_and_the_figures():
    from core.demo import format_report

    stage = {"run_dir": "/o/runs/x", "steps": 10, "loss_first": 6.0, "loss_last": 3.5, "tokens_per_s": 900.0,
             "seconds": 12.0}
    report = {"mode": "full", "seconds": 200.0, "out": "/o", "data": {"pretrain": "/o/data/pretrain.jsonl"},
              "tokenizer": {"dir": "/o/tokenizer", "vocab_size": 2048}, "pretrain": stage, "sft": stage,
              "export": {"file": "/o/export/m.gguf", "bytes": 2**20, "arch": "llama", "modelfile": "/o/export/Modelfile",
                         "parity": {"passed": True, "tokenizer_match": True, "max_abs_logit_diff": 0.5,
                                    "top1_agreement": 1.0}},
              "chat": [{"prompt": "What is 3 + 4?", "reply": "3 + 4 = 7.", "tokens_per_s": 400.0}],
              "tools": {"prompts": 60, "right_call_rate": 0.95, "accuracy_with_tools": 0.8,
                        "accuracy_without_tools": 0.02, "examples": [
                            {"question": "What is 37 * 48?", "answer": "37 * 48 = 1776.",
                             "calls": [{"name": "calculate_math", "arguments": '{"expression": "37 * 48"}'}]}]}}
    text = format_report(report)
    for needle in ("/o/tokenizer", "6.000 -> 3.500", "/o/export/m.gguf", "PASSED", "ollama create",
                   "3 + 4 = 7.", "400 tokens/s", "60 held-out tool prompts", "right tool 95%", "80% with the tools",
                   "2% without", 'calculate_math{"expression": "37 * 48"} -> 37 * 48 = 1776.'):
        assert needle in text
