"""bench/calculator_gain.py: its splits and its table (the full run is a benchmark; the tests that use its model
and runs are in tests/test_agent_rl.py and tests/test_rl_train.py)."""
from __future__ import annotations

import json


def test_the_held_out_splits_share_no_call_with_training_and_answer_prompts_end_with_the_tools_result(tmp_path):
    from bench.calculator_gain import write_data

    paths = write_data(tmp_path)

    def calls(name):
        out = []
        for line in paths[name].read_text(encoding="utf-8").splitlines():
            turns = json.loads(line)["conversations"]
            out += [t["tool_calls"] for t in turns if t.get("tool_calls")]
        return out

    def questions(name):
        return [next(t["content"] for t in json.loads(line)["conversations"] if t["role"] == "user")
                for line in paths[name].read_text(encoding="utf-8").splitlines()]

    trained = set(calls("sft")) | set(calls("rl_answer"))
    for split in ("held_out_answer", "validation_answer"):
        assert len(calls(split)) == 64 and not set(calls(split)) & trained
    assert not set(calls("held_out_answer")) & set(calls("validation_answer"))
    assert questions("held_out") == questions("held_out_answer") and questions("rl") == questions("rl_answer")
    record = json.loads(paths["held_out_answer"].read_text(encoding="utf-8").splitlines()[0])
    assert record["conversations"][-1]["role"] == "tool"
    assert record["answer"] in record["conversations"][-1]["content"]


def test_the_table_gives_each_method_its_start_seeds_and_paired_interval():
    from bench.calculator_gain import table
    from bench.rl_gain import paired

    start = [0.0, 1.0, 0.0, 0.0]
    runs = [[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
    row = {"before": 0.25, "per_seed": [0.5, 0.75], "vs_start": paired(runs, start, resamples=200)}
    result = {"settings": {"start": "step-000020", "steps": {"grpo": 40}}, "test": {"grpo": row}}
    lines = table(result, markdown=True).splitlines()
    assert lines[0].startswith("| Held-out test answers (64), from SFT step-000020 | before |")
    assert lines[2].startswith("| GRPO (4 × G 8), 40 steps | 25.0% | 62.5% (50.0%, 75.0%) | +37.5 pt [")
