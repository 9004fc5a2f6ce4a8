"""lm-evaluation-harness against `minimind serve`: its `local-completions` model runs a log-likelihood task and a
generation task over a real server process on 127.0.0.1, with local JSONL tasks (no hub) and the checkpoint's own
saved tokenizer folder (loaded by transformers, as lm-eval does)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness is a dev extra (pip install lm-eval)")

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [("The sky is", ["blue", "green", "loud"], 0), ("Two plus two is", ["four", "five", "six"], 0),
             ("小明的猫是", ["白色的", "一辆车"], 0), ("Fire is", ["cold", "hot"], 1)]


def task_yaml(name: str, data: Path, body: str) -> str:
    return (f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
            f"test_split: test\n{body}")


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory) -> Path:
    """Two tasks over local JSONL: multiple choice (log-likelihood of each option) and greedy generation."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    data = folder / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": q, "choices": c, "answer": a}, ensure_ascii=False) + "\n"
                            for q, c, a in QUESTIONS), encoding="utf-8")
    (folder / "mm_choice.yaml").write_text(task_yaml("mm_choice", data, (
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{answer}}'\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\n")))
    (folder / "mm_answer.yaml").write_text(task_yaml("mm_answer", data, (
        "output_type: generate_until\ndoc_to_text: 'Q: {{question}}\\nA:'\ndoc_to_target: '{{choices[answer]}}'\n"
        "generation_kwargs:\n  until: ['\\n']\n  max_gen_toks: 6\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n")))
    return folder


@pytest.fixture(scope="module")
def served(infer_checkpoint):
    """`minimind serve` in its own process on a free loopback port; yields (base URL, served model name)."""
    proc = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model", str(infer_checkpoint), "--port", "0"],
                            cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline, url = time.monotonic() + 120, None
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        if match := re.search(r"at (http://127\.0\.0\.1:\d+/v1)", line):
            url = match.group(1)
    try:
        assert url, f"minimind serve did not start (rc {proc.poll()})"
        with urllib.request.urlopen(f"{url}/models", timeout=30) as resp:
            yield url, json.load(resp)["data"][0]["id"]
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_local_completions_runs_a_loglikelihood_and_a_generation_task(served, infer_checkpoint, tasks_dir, tmp_path,
                                                                      monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    url, model = served
    model_args = (f"model={model},base_url={url}/completions,"
                  f"tokenizer_backend=huggingface,tokenizer={infer_checkpoint / 'tokenizer'},"
                  "max_length=512,num_concurrent=1,max_retries=1,batch_size=2")
    out = simple_evaluate(model="local-completions", model_args=model_args, tasks=["mm_choice", "mm_answer"],
                          task_manager=TaskManager(include_path=str(tasks_dir), include_defaults=False),
                          log_samples=True)  # include_defaults=False: indexing lm-eval's own ~14k tasks took 60 s
    choice, answer = out["results"]["mm_choice"], out["results"]["mm_answer"]
    assert 0.0 <= choice["acc,none"] <= 1.0 and 0.0 <= choice["acc_norm,none"] <= 1.0
    assert 0.0 <= answer["exact_match,none"] <= 1.0
    samples = out["samples"]["mm_choice"]
    assert len(samples) == len(QUESTIONS)
    for sample, (_q, options, _a) in zip(samples, QUESTIONS):
        scores = [ll for (ll, _greedy) in (r[0] for r in sample["resps"])]
        assert len(scores) == len(options) and all(s < 0 for s in scores)  # a real log-likelihood per option
    assert len(out["samples"]["mm_answer"]) == len(QUESTIONS)
