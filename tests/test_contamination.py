"""Contamination check: text normalised to words and CJK characters, items flagged when an n-gram occurs in the
training data of the run or of any run up its `init` chain, too-short items left unchecked, and the per-file
n-gram index cached by path, size, mtime and n. Runtimes: each test < 0.5 s."""
from __future__ import annotations

import json

import numpy as np

from core.eval import contamination as cont
from core.eval.tasks import Item, Task

LEAK_A = "the quick brown fox jumps over the lazy dog while the cat sleeps"
LEAK_B = "床前明月光疑是地上霜"


def _run(path, files, init=None):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"init": init, "data": {"files": [str(f) for f in files]}}))
    return path


def _task():
    def item(question, answer, i):
        return Item(question=question, prompt=question, options=[f" {answer}", " other"], choices=[answer, "other"],
                    gold=0, id=str(i))

    return Task("t", "arc", [item("What does the quick brown fox jump over", "the lazy dog while the cat sleeps", 1),
                             item("床前明月光", "疑是地上霜", 2), item("A question nobody trained on at all here", "no", 3),
                             item("Too short", "yes", 4)])


def _lineage(tmp_path):
    a_file, b_file = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a_file.write_text(json.dumps({"text": f"Intro. {LEAK_A.upper()}!"}) + "\n", encoding="utf-8")
    b_file.write_text(json.dumps({"conversations": [{"role": "user", "content": f"诗：{LEAK_B}。"}]},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    parent = _run(tmp_path / "runs" / "pretrain", [a_file])
    child = _run(tmp_path / "runs" / "sft", [b_file], init=str(parent / "checkpoints" / "step-000010"))
    return parent, child


def test_tokens_are_lowercase_words_and_single_cjk_characters():
    assert cont.tokens("Hello, World! 床前 明月光 x_y 42") == ["hello", "world", "床", "前", "明", "月", "光", "x", "y", "42"]


def test_items_are_flagged_from_the_whole_lineage(tmp_path):
    parent, child = _lineage(tmp_path)
    report = cont.check_contamination(_task(), child / "checkpoints" / "step-000005", n=8, cache_dir=tmp_path / "c")
    assert report["item_flags"] == [True, True, False, None]  # A's text leaks item 1, B's (the child's) item 2
    assert (report["items_checked"], report["contaminated"], report["share"]) == (3, 2, 2 / 3)
    assert report["flagged"] and report["runs"] == [str(child), str(parent)]


def test_the_score_dict_carries_contamination_and_clean_accuracy(tmp_path, monkeypatch):
    from core.eval.bench import score_task

    _, child = _lineage(tmp_path)
    monkeypatch.setenv("MINIMIND_NGRAM_CACHE", str(tmp_path / "c"))
    result = score_task(_Fixed(), _task(), run=child, ngram=8)
    assert [r["contaminated"] for r in result["items"]] == [True, True, False, None]
    assert result["contamination"]["share"] == 2 / 3 and result["summary"]["n_clean"] == 1


class _Fixed:
    def loglikelihood(self, pairs):
        return [(-1.0 if x != " other" else -2.0, 1) for _, x in pairs]


def test_the_index_is_cached_and_rebuilt_when_the_file_changes(tmp_path, monkeypatch):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": LEAK_A}) + "\n", encoding="utf-8")
    first = cont.file_index(data, 8, tmp_path / "c")
    assert len(first) == len(LEAK_A.split()) - 8 + 1 and len(list((tmp_path / "c").glob("*.npy"))) == 1

    def no_rebuild(*a):
        raise AssertionError("the cached index should have been read")

    monkeypatch.setattr(cont, "build_file_index", no_rebuild)
    assert np.array_equal(cont.file_index(data, 8, tmp_path / "c"), first)
    monkeypatch.undo()
    data.write_text(json.dumps({"text": LEAK_A + " and more words"}) + "\n", encoding="utf-8")
    assert len(cont.file_index(data, 8, tmp_path / "c")) == len(first) + 3


def test_ngrams_never_span_two_documents(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in ("a b c", "d e f")), encoding="utf-8")
    assert len(cont.build_file_index(data, 4)) == 0 and len(cont.build_file_index(data, 3)) == 2


def test_cli_reports_the_share_and_the_runs(tmp_path, capsys, monkeypatch):
    from core.cli import main

    _, child = _lineage(tmp_path)
    bench = tmp_path / "b.jsonl"
    bench.write_text(json.dumps({"question": {"stem": "What does the quick brown fox jump over", "choices": [
        {"text": "the lazy dog while the cat sleeps", "label": "A"}, {"text": "x", "label": "B"}]},
        "answerKey": "A"}) + "\n", encoding="utf-8")
    monkeypatch.setenv("MINIMIND_NGRAM_CACHE", str(tmp_path / "c"))
    assert main(["eval", "contamination", "--task", str(bench), "--run", str(child), "--ngram", "8"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 checked items" in out and "(100.0%" in out and "HIGH" in out and str(child) in out
