"""bench/eval_speed.py: its paired arithmetic, and a quick run that measures every scorer on the same items
(the full run is a benchmark, not a test). Runtime (2 shared cores): ~5 s."""
from __future__ import annotations

import pytest

from bench.eval_speed import BASE, run, summarise, table


def _scored(tok_s, scores):
    return {"tok_s": tok_s, "tokens": 100, "scores": scores}


def test_ratios_pair_each_scorer_with_torch_in_the_same_round():
    rounds = [{BASE: _scored(100.0, [-1.0, -2.0]), "llama.cpp f32": _scored(50.0, [-1.0, -2.0005])},
              {BASE: _scored(50.0, [-1.0, -2.0]), "llama.cpp f32": _scored(100.0, [-1.001, -2.0])},
              {BASE: _scored(80.0, [-1.0, -2.0]), "llama.cpp f32": _scored(40.0, [-1.0, -2.0])}]
    rows = summarise(rounds)
    assert rows["llama.cpp f32"]["ratios"] == pytest.approx([0.5, 2.0, 0.5])
    assert rows["llama.cpp f32"]["ratio"] == pytest.approx(0.5)  # median of paired ratios, not 50 / 80
    assert rows["llama.cpp f32"]["tok_s"] == pytest.approx({"median": 50.0, "min": 40.0, "max": 100.0})
    assert rows["llama.cpp f32"]["max_abs_diff"] == pytest.approx(1e-3)
    assert rows[BASE]["ratio"] == 1.0 and rows[BASE]["max_abs_diff"] == 0.0


def test_a_quick_run_scores_the_same_items_on_every_scorer(torch_single_thread):
    result = run(items=2, rounds=1, qtypes=("f32",))
    rows = result["rows"]
    assert list(rows)[:2] == [BASE, "torch bf16"] and result["tokens"] > 0
    if "llama_cpp" not in result:  # llama-cpp-python installed: the f32 GGUF scores as torch fp32 does
        assert rows["llama.cpp f32"]["max_abs_diff"] < 2e-3 and rows["llama.cpp f32"]["tok_s"]["median"] > 0
    text = table(result, markdown=True)
    assert "| torch fp32 |" in text and "x torch fp32 (paired)" in text and "1 interleaved rounds" in text
