"""`minimind demo`: the whole pipeline through the real trainer CLI, llama.cpp export/parity and chat."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")


@pytest.mark.slow
def test_fast_demo_runs_every_stage_and_reports_its_figures(tmp_path):
    pytest.importorskip("llama_cpp", reason="the demo's export check and chat need llama-cpp-python")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "core", "demo", "--fast", "--threads", "1", "--json",
                           "--out", str(out)], capture_output=True, text=True, env=cli_env(), cwd=tmp_path,
                          timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("1/6 data", "2/6 tokenizer", "3/6 pretrain", "4/6 sft", "5/6 export", "6/6 chat"):
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
              "chat": [{"prompt": "What is 3 + 4?", "reply": "3 + 4 = 7.", "tokens_per_s": 400.0}]}
    text = format_report(report)
    for needle in ("/o/tokenizer", "6.000 -> 3.500", "/o/export/m.gguf", "PASSED", "ollama create",
                   "3 + 4 = 7.", "400 tokens/s"):
        assert needle in text
