"""bench/rl_vs_trl.py at a trivial size: both GRPO implementations train from the same exported model, the same
number of steps on the same prompts, and the table has a finite row for each (the full run is a benchmark, not a
test). Runtime (2 shared cores): ~30 s."""
from __future__ import annotations

import math

import pytest

pytest.importorskip("trl", reason="TRL is a dev extra (pip install -e '.[dev]')")


@pytest.mark.slow
def test_a_tiny_run_trains_both_sides_the_same_steps_on_the_same_prompts(tmp_path, torch_single_thread):
    from bench.rl_vs_trl import SIDES, curve_table, run, table

    # the FAST demo's model preset; 2 steps of 4 prompts × 8 completions each side
    res = run(steps=2, seeds=(0,), sft_steps=20, train_prompts=40, held_out=16, sft_answered=20, model="tiny",
              work_dir=str(tmp_path))
    r = res["results"]
    assert res["config"]["export"]["architecture"] == "LlamaForCausalLM"
    assert res["config"]["export"]["max_logit_diff"] < 1e-4
    for side in SIDES:
        assert r[side]["steps"] == [2]
        prompts = r[side]["step_prompts"][0]
        assert len(prompts) == 2 and all(len(step) == res["config"]["prompts_per_step"] for step in prompts)
        assert len(r[side]["reward_curve"]) == 2 and all(math.isfinite(x) for x in r[side]["reward_curve"])
        assert math.isfinite(r[side]["step_s"]["mean"]) and r[side]["step_s"]["mean"] > 0
        for m in ("accuracy", "reward"):
            d = r[side]["vs_sft"][m]
            assert d["n"] == 16 and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    assert r["same_prompts"]
    assert r["ours"]["step_prompts"][0][0] != r["ours"]["step_prompts"][0][1]  # the second step moved on
    text = table(res)
    assert "ours (1 seeds)" in text and "TRL GRPOTrainer (1 seeds)" in text and "ours − TRL" in text
    assert "nan" not in text.lower() and "inf" not in text.lower()
    assert len(curve_table(res).splitlines()) == 3  # header, step 1, step 2
