"""`minimind eval bench` / `eval ppl` and eval during training: each file format read into lm-eval's prompt and
options, bad lines named FILE:LINE: field, acc vs acc_norm and the Wilson interval on known scores, the batched
torch scorer equal to the per-sequence `Backend.score`, the CLI end to end on a tiny checkpoint, and
`eval/<task>/acc` events from a short training run.

Runtimes (2 shared cores): format and scoring tests < 0.1 s each; the CLI tests ~1-2 s; the training test ~5-9 s; GGUF + endpoint ~8 s."""
from __future__ import annotations

import json
import math

import pytest

from core.data import DataError
from core.eval.bench import BackendScorer, TorchScorer, load_task, score_task, wilson_interval

# one line of each format, and (prompt, options, gold) as lm-eval's templates render it
CEVAL = "id,question,A,B,C,D,answer\n0,1+1=?,1,2,3,4,B\n"
CMMLU = ",Question,A,B,C,D,Answer\n0,天空是什么颜色？,红,绿,蓝,黑,C\n"
MMLU_CSV = "What is 2+2?,3,4,5,6,B\n"
MMLU_JSONL = {"question": "What is 2+2?", "choices": ["3", "4", "5", "6"], "answer": 1}
ARC = {"id": "a1", "question": {"stem": "Which is a metal?", "choices": [{"text": "iron", "label": "A"},
                                                                        {"text": "wood", "label": "B"}]},
       "answerKey": "A"}
ARC_FLAT = {"question": "Which is a metal?", "choices": {"text": ["wood", "iron"], "label": ["1", "2"]},
            "answerKey": "2"}
OBQA = {"question_stem": "The sun is a", "choices": {"text": ["star", "planet"], "label": ["A", "B"]},
        "answerKey": "A"}
HELLASWAG = {"activity_label": "Cooking", "ctx_a": "A man cracks an egg.", "ctx_b": "he",
             "endings": ["stirs it.", "eats the pan."], "label": 0}
PIQA = {"goal": "Open a jar", "sol1": "Twist the lid.", "sol2": "Shout at it."}

CASES = [
    ("c.csv", CEVAL, "ceval", "1+1=?\nA. 1\nB. 2\nC. 3\nD. 4\n答案：", [" A", " B", " C", " D"], 1),
    ("cmmlu.csv", CMMLU, "ceval", "天空是什么颜色？\nA. 红\nB. 绿\nC. 蓝\nD. 黑\n答案：", [" A", " B", " C", " D"], 2),
    ("m.csv", MMLU_CSV, "mmlu", "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:", [" A", " B", " C", " D"], 1),
    ("m.jsonl", MMLU_JSONL, "mmlu", "What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:", [" A", " B", " C", " D"], 1),
    ("arc.jsonl", ARC, "arc", "Question: Which is a metal?\nAnswer:", [" iron", " wood"], 0),
    ("arc_flat.jsonl", ARC_FLAT, "arc", "Question: Which is a metal?\nAnswer:", [" wood", " iron"], 1),
    ("ob.jsonl", OBQA, "obqa", "The sun is a", [" star", " planet"], 0),
    ("hs.jsonl", HELLASWAG, "hellaswag", "Cooking: A man cracks an egg. He", [" stirs it.", " eats the pan."], 0),
    ("valid.jsonl", PIQA, "piqa", "Question: Open a jar\nAnswer:", [" Twist the lid.", " Shout at it."], 0),
]


def _write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("name,content,fmt,prompt,options,gold", CASES, ids=[c[0] for c in CASES])
def test_each_format_is_detected_and_rendered_with_its_template(tmp_path, name, content, fmt, prompt, options, gold):
    if fmt == "piqa":
        (tmp_path / "valid-labels.lst").write_text("0\n", encoding="utf-8")  # PIQA's labels live beside the file
    task = load_task(_write(tmp_path / name, content))
    [item] = task.items
    assert (task.format, item.prompt, item.options, item.gold) == (fmt, prompt, options, gold)


@pytest.mark.parametrize("name,content,where", [
    ("c.csv", "question,A,B,C,D,answer\nq,1,2,3,4,E\n", ":2: answer: expected one of A, B, C, D"),
    ("c.csv", "question,A,B,C,D,answer\nq,1,2,3,4,\n", "C-Eval's test split has no answers"),
    ("c.csv", "question,A,B,answer\nq,1,2,A\n", ":1: (header): missing column(s) c, d"),
    ("arc.jsonl", json.dumps({**ARC, "answerKey": "Z"}), ":1: answerKey: 'Z' is not one of"),
    ("hs.jsonl", json.dumps({**HELLASWAG, "endings": "x"}), ":1: endings: expected a list"),
    ("m.jsonl", json.dumps(MMLU_JSONL) + "\n{not json\n", ":2: (line): not a JSON object"),
    ("valid.jsonl", json.dumps(PIQA), ":1: label: missing"),
])
def test_a_bad_line_names_file_line_and_field(tmp_path, name, content, where):
    path = _write(tmp_path / name, content)
    with pytest.raises(DataError) as err:
        load_task(path)
    assert str(err.value).startswith(str(path)) and where in str(err.value)


class KnownScores:
    """A stand-in model whose log-likelihood of an option is fixed: -(length in bytes) × rate."""

    def __init__(self, rate: dict):
        self.rate = rate

    def loglikelihood(self, pairs):
        return [(-len(x.encode()) * self.rate.get(x, 1.0), 1) for _, x in pairs]


def test_acc_takes_the_highest_sum_and_acc_norm_the_highest_per_byte(tmp_path):
    task = load_task(_write(tmp_path / "arc.jsonl", {**ARC, "question": {
        "stem": "q", "choices": [{"text": "a long right answer", "label": "A"}, {"text": "no", "label": "B"}]}}))
    # " a long right answer": 20 bytes × 0.5 = -10; " no": 3 bytes × 1.0 = -3 → acc picks B, acc_norm picks A
    [item] = score_task(KnownScores({" a long right answer": 0.5}), task)["items"]
    assert item["scores"] == [-10.0, -3.0] and item["scores_norm"] == [-0.5, -1.0]
    assert (item["chosen"], item["correct"], item["chosen_norm"], item["correct_norm"]) == (1, False, 0, True)


def test_the_wilson_interval_matches_hand_computed_values():
    lo, hi = wilson_interval(8, 10)  # p=0.8, z=1.96: centre 0.7167, half-width 0.2266
    assert math.isclose(lo, 0.4902, abs_tol=1e-4) and math.isclose(hi, 0.9433, abs_tol=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 0) == (0.0, 1.0)


def test_builtin_sets_are_deterministic_and_k_shot_prepends_solved_examples():
    a, b = load_task("demo-facts"), load_task("demo-facts")
    assert len(a.items) == 200 and [i.prompt for i in a.items] == [i.prompt for i in b.items]
    shot = a.fewshot_prefix(0, 2)
    assert shot.count("\n\n") == 2 and a.items[0].prompt not in shot and shot == b.fewshot_prefix(0, 2)


def test_batched_torch_scores_equal_per_sequence_backend_scores(infer_checkpoint, torch_single_thread):
    from core.infer.backend import TorchBackend

    task = load_task("demo-facts", limit=6)
    with TorchBackend(infer_checkpoint) as backend:
        batched = score_task(TorchScorer.from_backend(backend, batch_size=5), task, k_shot=1)
        single = score_task(BackendScorer(backend), task, k_shot=1)
    for x, y in zip(batched["items"], single["items"]):
        assert x["scores"] == pytest.approx(y["scores"], abs=2e-3)
    s = batched["summary"]
    assert s["n"] == 6 and s["tokens"] > 0 and s["settings"]["k_shot"] == 1 and s["chance"] == 0.5
    assert s["acc_ci95"][0] <= s["acc"] <= s["acc_ci95"][1]
    assert batched["contamination"]["checked"] is False  # the fixture's checkpoint belongs to no training run


def test_cancel_stops_at_the_next_batch(infer_checkpoint, torch_single_thread):
    from core.infer.backend import TorchBackend

    seen = []
    with TorchBackend(infer_checkpoint) as backend:
        result = score_task(backend, load_task("demo-facts", limit=12), batch_size=4,
                            progress=lambda i, n: seen.append(i), cancelled=lambda: len(seen) >= 2)
    assert result["cancelled"] and seen == [2, 4] and result["summary"]["n"] == 4


def test_eval_bench_cli_prints_the_table_and_writes_items(infer_checkpoint, tmp_path, capsys, torch_single_thread):
    from core.cli import main

    out = tmp_path / "bench.json"
    ceval = _write(tmp_path / "c.csv", CEVAL)
    assert main(["eval", "bench", "--model", str(infer_checkpoint), "--task", "demo-facts", "--task", str(ceval),
                 "--limit", "8", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "acc_norm" in table and "demo-facts" in table and "not checked" in table
    demo, c = json.loads(out.read_text(encoding="utf-8"))
    assert demo["summary"]["n"] == 8 and c["summary"]["n"] == 1 and c["format"] == "ceval"
    assert set(demo["items"][0]) >= {"question", "scores", "chosen", "gold", "correct", "contaminated"}


def test_eval_ppl_reports_perplexity_and_bits_per_byte(infer_checkpoint, tmp_path, capsys, torch_single_thread):
    from core.cli import main
    from core.infer.backend import TorchBackend

    texts = ["The quick brown fox jumps over the lazy dog.", "床前明月光，疑是地上霜。"]
    data = tmp_path / "held.jsonl"
    data.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    assert main(["eval", "ppl", "--model", str(infer_checkpoint), "--data", str(data)]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    nll, n, n_bytes = 0.0, 0, 0
    with TorchBackend(infer_checkpoint) as backend:
        for t in texts:
            ids = backend.tokenize(t)
            nll -= sum(backend.score(ids))
            n += len(ids) - 1
            n_bytes += len(t.encode()) - len(backend.detokenize(ids[:1]).encode())
    assert result["ppl_tokens"] == n and result["ppl_bytes"] == n_bytes
    assert math.isclose(result["perplexity"], math.exp(nll / n), rel_tol=1e-3)
    assert math.isclose(result["bits_per_byte"], nll / math.log(2) / n_bytes, rel_tol=1e-3)


def test_training_emits_eval_task_acc_events(tiny_tokenizer_dir, tmp_path):
    from core.data.demo import generate_demo_data
    from tests.fixtures.train import one_thread, read_events, train_config
    from core.train import run_training

    data = generate_demo_data(tmp_path / "demo", sizes={"pretrain": 64, "sft": 1, "dpo": 1, "rl": 1,
                                                        "sft_tools": 1, "agent_rl": 1})
    bench = _write(tmp_path / "tiny_arc.jsonl", "".join(json.dumps(ARC) + "\n" for _ in range(3)))
    cfg = train_config(tmp_path / "run", tiny_tokenizer_dir, [data["pretrain"]], max_steps=4, eval_every=2,
                       eval_tasks=[str(bench)], batch_size=4)
    with one_thread():
        assert run_training(cfg) == 0, (tmp_path / "run" / "events.jsonl").read_text()
    evals = [e for e in read_events(tmp_path / "run") if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(set(e["metrics"]) == {"eval/tiny_arc/acc", "eval/tiny_arc/acc_norm"} for e in evals)
    assert all(e["metrics"]["eval/tiny_arc/acc"] in (0.0, 1.0) for e in evals)  # 3 identical items


def test_gguf_and_endpoint_scores_match_the_checkpoint(tiny_checkpoint, tiny_gguf, torch_single_thread):
    """The same items scored three ways: the checkpoint (batched torch), its GGUF (llama.cpp logits through
    Backend.score) and `minimind serve` over the checkpoint (/v1/completions with echo + logprobs)."""
    pytest.importorskip("openai", reason="the endpoint scorer uses the official openai client")
    from core.eval.bench import EndpointScorer
    from core.infer.backend import TorchBackend, open_backend
    from core.serve import make_server

    task = load_task("demo-facts", limit=2)
    with TorchBackend(tiny_checkpoint) as torch_backend:
        want = [r["scores"] for r in score_task(torch_backend, task)["items"]]
        srv = make_server(torch_backend, "127.0.0.1", 0)
        srv.start_background()
        try:
            served = score_task(EndpointScorer(srv.url), task)
        finally:
            srv.shutdown()
            srv.server_close()
    with open_backend(tiny_gguf, n_threads=1) as gguf:  # one thread: 8x faster on a busy 2-core machine
        from_gguf = score_task(gguf, task)
    for w, e, g in zip(want, served["items"], from_gguf["items"]):
        assert e["scores"] == pytest.approx(w, abs=2e-3) and g["scores"] == pytest.approx(w, abs=2e-2)
    assert served["summary"]["settings"]["scorer"] == "EndpointScorer"
    assert from_gguf["summary"]["settings"]["scorer"] == "BackendScorer"
