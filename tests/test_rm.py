"""Reward model: Bradley–Terry training on real preference pairs, held-out accuracy, use as a reward source."""
from __future__ import annotations

import json

import pytest

from core.config.rl import RewardConfig
from core.rl.rewards import RewardCombiner, RewardInputs
from core.train import run_training
from tests.fixtures.rl import rl_config
from tests.fixtures.train import one_thread, read_events


@pytest.mark.slow
def test_reward_model_learns_held_out_preferences_and_scores_rollouts(rl_data, demo_sft_run, tmp_path):
    run_dir = tmp_path / "rm"
    cfg = rl_config(run_dir, demo_sft_run, [rl_data["dpo"]], "rm", max_steps=30, batch_size=8, eval_every=15,
                    **{"optim.lr": 2e-3, "data.max_len": 128, "data.eval_files": [str(rl_data["dpo_eval"])],
                       "data.eval_batches": 8})
    with one_thread():
        assert run_training(cfg) == 0
    events = read_events(run_dir)
    evals = [e["metrics"] for e in events if e["type"] == "eval"]
    assert len(evals) == 2 and evals[-1]["eval/accuracy"] > 0.6, evals
    metric = [e for e in events if e["type"] == "metric"][-1]["metrics"]
    assert {"loss", "accuracy", "rewards/chosen", "rewards/rejected", "rewards/margins"} <= set(metric)
    ckpt = run_dir / "checkpoints" / "step-000030"
    assert (ckpt / "value_head.safetensors").is_file() and (ckpt / "tokenizer" / "tokenizer.json").is_file()

    # the trained model as a reward source: held-out chosen replies outscore rejected ones
    rewards = RewardCombiner(RewardConfig.model_validate(
        {"sources": [{"type": "reward_model", "path": str(run_dir), "name": "rm"}]}))
    pairs = [json.loads(line) for line in rl_data["dpo_eval"].read_text(encoding="utf-8").splitlines()][:32]
    prompts = [p["chosen"][:-1] for p in pairs]
    with one_thread():
        chosen, breakdown = rewards(RewardInputs([p["chosen"][-1]["content"] for p in pairs], [None] * 32, prompts))
        rejected, _ = rewards(RewardInputs([p["rejected"][-1]["content"] for p in pairs], [None] * 32, prompts))
    assert set(breakdown) == {"rm"} and chosen.abs().max() <= 3.0
    assert float((chosen > rejected).float().mean()) > 0.6
