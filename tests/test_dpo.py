"""DPO end to end: a tiny chat model learns to prefer the chosen replies of held-out real preference pairs."""
from __future__ import annotations

import pytest
import torch

from core.rl.losses import sequence_logprobs
from core.train import run_training
from tests.fixtures.rl import rl_config
from tests.fixtures.train import one_thread, read_events

DPO_METRICS = {"loss", "dpo_loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
               "logps/chosen", "logps/rejected"}


@torch.no_grad()
def preference_accuracy(checkpoint, pairs_file, cache_dir, average: bool) -> float:
    """Share of pairs whose chosen reply the model finds more likely than the rejected one."""
    from core.data import DPODataset, collate_dpo
    from core.model.io import load_model

    model, tok = load_model(checkpoint)
    ds = DPODataset([pairs_file], tok, 128, cache_dir)
    wins = 0
    for start in range(0, len(ds), 16):
        batch = collate_dpo([ds[i] for i in range(start, min(start + 16, len(ds)))], tok.pad_id)
        lp = sequence_logprobs(model(batch["input_ids"]).logits, batch["labels"], average)
        chosen, rejected = lp.chunk(2)
        wins += int((chosen > rejected).sum())
    return wins / len(ds)


@pytest.mark.slow
def test_dpo_raises_held_out_preference_accuracy(rl_data, demo_sft_run, tmp_path):
    run_dir = tmp_path / "dpo"
    cfg = rl_config(run_dir, demo_sft_run, [rl_data["dpo"]], "dpo", max_steps=20, batch_size=8, eval_every=10,
                    method_options={"beta": 0.1, "length_normalised": True},
                    **{"optim.lr": 1e-3, "data.max_len": 128, "data.eval_files": [str(rl_data["dpo_eval"])],
                       "data.eval_batches": 8})
    with one_thread():
        before = preference_accuracy(demo_sft_run, rl_data["dpo_eval"], tmp_path / "cache", average=True)
        assert run_training(cfg) == 0
        after = preference_accuracy(run_dir, rl_data["dpo_eval"], tmp_path / "cache", average=True)
    assert after >= before + 0.1, (before, after)
    events = read_events(run_dir)
    metric = [e for e in events if e["type"] == "metric"][-1]["metrics"]
    assert DPO_METRICS <= set(metric)
    assert metric["rewards/margins"] == pytest.approx(metric["rewards/chosen"] - metric["rewards/rejected"], abs=1e-5)
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20]
    assert evals[-1]["metrics"]["eval/preference_accuracy"] == pytest.approx(after, abs=1e-6)
    assert (run_dir / "checkpoints" / "step-000020" / "reference.safetensors").is_file()


def test_dpo_reference_stays_frozen_and_equals_the_start(rl_data, demo_sft_run, tmp_path):
    """The reference in the final checkpoint is bit-identical to the starting weights."""
    from core.model import io

    run_dir = tmp_path / "dpo"
    cfg = rl_config(run_dir, demo_sft_run, [rl_data["dpo"]], "dpo", max_steps=2, batch_size=4,
                    **{"optim.lr": 1e-2, "data.max_len": 64})
    with one_thread():
        assert run_training(cfg) == 0
    start = io.read_weights(io.resolve_checkpoint(demo_sft_run) / io.WEIGHTS)
    ckpt = io.resolve_checkpoint(run_dir)
    ref = io.read_weights(ckpt / "reference.safetensors")
    policy = io.read_weights(ckpt / io.WEIGHTS)
    assert all(torch.equal(start[k], ref[k]) for k in start)
    assert any(not torch.equal(start[k], policy[k]) for k in start)
