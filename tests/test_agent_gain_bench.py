"""bench/agent_gain.py: the splits it trains and reports on, and its table (the full run is a benchmark, not a test)."""
from __future__ import annotations

import json

from bench.agent_gain import LOSSES, _split, table
from bench.rl_gain import paired


def test_the_agent_splits_are_disjoint_and_the_held_out_lines_go_to_validation_then_test(tmp_path):
    from core.data import generate_demo_data
    from core.data.demo import agent_rl_held_out

    generate_demo_data(tmp_path / "data", sizes={"agent_rl": 40})
    lines = (tmp_path / "data" / "agent_rl.jsonl").read_text(encoding="utf-8").splitlines()
    parts = {k: p.read_text(encoding="utf-8").splitlines() for k, p in _split(tmp_path / "data" / "agent_rl.jsonl",
                                                                              tmp_path).items()}
    held = [line for i, line in enumerate(lines) if agent_rl_held_out(i)]
    assert parts["validation"] + parts["test"] == held and len(parts["test"]) == 4
    assert not set(parts["train"]) & set(held) and len(parts["train"]) == 32
    assert all("gt" in json.loads(line) for line in parts["test"])


def test_the_table_reports_each_loss_against_sft_with_its_interval():
    base = [0.0, 1.0, 0.0, 0.0]
    runs = [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
    split = {"n": 4, "sft": 0.25}
    for loss in LOSSES:
        split[loss] = {"mean": 0.625, "per_seed": [0.5, 0.75], "vs_sft": paired(runs, base, resamples=200)}
    text = table({"test": split}, "test", markdown=True)
    assert "SFT + agent RL (cispo) | 62.5% (50.0%, 75.0%) | +37.5 pt [" in text and "| SFT (before) | 25.0% |" in text


def test_the_explore_table_gives_each_tool_its_greedy_sampled_and_pass_at_k_figures():
    from bench.agent_gain import explore_table

    result = {"samples": 8, "temperature": 1.0, "tools": {
        "calculate_math": {"cases": 30, "greedy": 0.87, "sampled": 0.362, "pass_at_k": 0.83, "signal": 0.83},
        "unit_converter": {"cases": 30, "greedy": 0.3, "sampled": 0.017, "pass_at_k": 0.13, "signal": 0.13}}}
    lines = explore_table(result).splitlines()
    assert lines[0] == "| tool | cases | greedy | sampled (T=1.0) | pass@8 | groups with signal |"
    assert lines[3] == "| unit_converter | 30 | 30% | 1.7% | 13% | 13% |"


def _seed_result(seed: int, cases: list[float], sft_cases: list[float], **settings) -> dict:
    split = {"n": len(sft_cases), "sft": sum(sft_cases) / len(sft_cases), "sft_cases": sft_cases,
             "cispo": {"mean": sum(cases) / len(cases), "per_seed": [sum(cases) / len(cases)],
                       "vs_sft": paired([cases], sft_cases, resamples=200), "cases": [cases]}}
    return {"settings": {"rl_steps": 150, "seeds": [seed], "losses": ["cispo"], "model": "small", **settings},
            "seconds": {f"cispo-{seed}": 10.0}, "test": split}


def test_single_seed_results_combine_into_the_three_seed_run_they_make_and_mismatches_are_named():
    import pytest

    from bench.agent_gain import combine

    sft = [0.0, 1.0, 0.0, 1.0]
    per_seed = {0: [1.0, 1.0, 0.0, 1.0], 1: [1.0, 1.0, 1.0, 1.0], 2: [0.0, 0.0, 0.0, 1.0]}
    merged = combine({f"s{s}.json": _seed_result(s, c, sft) for s, c in per_seed.items()})
    cispo = merged["test"]["cispo"]
    assert merged["settings"]["seeds"] == [0, 1, 2] and cispo["per_seed"] == [0.75, 1.0, 0.25]
    assert cispo["mean"] == 2 / 3 and cispo["vs_sft"] == paired(list(per_seed.values()), sft)
    assert set(merged["seconds"]) == {"cispo-0", "cispo-1", "cispo-2"}

    with pytest.raises(ValueError, match=r"^b\.json: settings differ from a\.json's in rl_steps$"):
        combine({"a.json": _seed_result(0, sft, sft), "b.json": _seed_result(1, sft, sft, rl_steps=100)})
    with pytest.raises(ValueError, match=r"^b\.json: its SFT answers on the test split differ"):
        combine({"a.json": _seed_result(0, sft, sft), "b.json": _seed_result(1, sft, [1.0, 1.0, 0.0, 1.0])})
    with pytest.raises(ValueError, match=r"^b\.json: seed 0 is already"):
        combine({"a.json": _seed_result(0, sft, sft), "b.json": _seed_result(0, sft, sft)})
