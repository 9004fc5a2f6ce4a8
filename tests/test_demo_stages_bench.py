"""bench/demo_stages.py: its paired arithmetic, and a quick run of its pieces on a FAST-plan demo folder (the full
run is a benchmark, not a test). Runtime (2 shared cores): ~30 s."""
from __future__ import annotations

import pytest

from bench.demo_stages import STAGES, compare, run, table


def _stage(correct: list[int]) -> dict:
    n = len(correct)
    summary = {"acc": sum(correct) / n, "acc_ci95": [0.0, 1.0], "acc_norm": sum(correct) / n,
               "acc_norm_ci95": [0.0, 1.0], "n": n, "chance": 0.5}
    return {"demo-facts": {"summary": summary, "seen": None,
                           "items": [{"correct": float(c), "correct_norm": float(c)} for c in correct]}}


def test_each_stage_is_paired_item_by_item_with_the_stage_before_it():
    rows = compare({"pretrain": _stage([1, 0, 0, 0]), "sft": _stage([0, 1, 0, 0]), "grpo": _stage([0, 1, 1, 1])})
    rows = rows["demo-facts"]
    assert "vs_prev" not in rows["pretrain"]
    # same accuracy, different items: a paired difference of 0 whose interval is not a point
    assert rows["sft"]["vs_prev"]["correct"]["mean"] == 0.0
    assert rows["sft"]["vs_prev"]["correct"]["ci95"][0] < 0 < rows["sft"]["vs_prev"]["correct"]["ci95"][1]
    assert rows["grpo"]["vs_prev"]["correct_norm"]["mean"] == pytest.approx(0.5)


def test_a_quick_run_scores_pretrain_sft_and_grpo_on_the_same_items(fast_demo, tmp_path, torch_single_thread):
    result = run(demo=fast_demo, rl_steps=1, tasks=("demo-facts",), limit=8, work_dir=tmp_path / "work")
    rows = result["results"]["demo-facts"]
    assert list(rows) == list(STAGES) and result["config"]["steps"] == {"pretrain": 4, "sft": 3, "grpo": 1}
    for stage, r in rows.items():
        s = r["summary"]
        assert s["n"] == 8 and s["chance"] == 0.5
        assert s["acc_ci95"][0] <= s["acc"] <= s["acc_ci95"][1] and s["acc_norm_ci95"][0] <= s["acc_norm"]
        assert r["seen"] is not None and 0 <= r["seen"] <= 8  # checked against the stage's own training data
    for stage in STAGES[1:]:
        d = rows[stage]["vs_prev"]["correct"]
        assert d["n"] == 8 and -1 <= d["ci95"][0] <= d["mean"] <= d["ci95"][1] <= 1
    text = table(result, markdown=True)
    assert "| demo-facts (8, 50%) | pretrain (4) |" in text and "| + SFT (3) |" in text and "| + GRPO (1) |" in text
