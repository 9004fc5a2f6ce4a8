"""The GRPO policy-loss variants (method_options.loss) against hand-computed values, with old ≠ current log-probs.

Two sequences, three tokens, the last token of the second masked out:
    logp = [[-1.0, -0.5, -2.0], [-0.3, -1.2, -9.0]],  old = [[-1.2, -0.5, -0.4], [-0.3, -0.2, -9.0]]
    ratio ρ = exp(logp − old) = [[e^0.2, 1, e^-1.6], [1, e^-1, 1]] = [[1.2214, 1, 0.2019], [1, 0.3679, 1]]
    A = [[1], [-0.5]]
"""
from __future__ import annotations

import math

import pytest
import torch

from core.rl.losses import aggregate_policy_loss, cispo_policy_loss, clipped_policy_loss

E02, E16, E1 = math.exp(0.2), math.exp(-1.6), math.exp(-1.0)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
A = torch.tensor([[1.0], [-0.5]])


def _logp():
    return torch.tensor([[-1.0, -0.5, -2.0], [-0.3, -1.2, -9.0]], requires_grad=True)


OLD = torch.tensor([[-1.2, -0.5, -0.4], [-0.3, -0.2, -9.0]])


def test_grpo_clips_per_token_and_averages_per_sequence():
    logp = _logp()
    pg, ratio, clipped = clipped_policy_loss(logp, OLD, A, 0.2)
    # row 0 (A=1): min(1.2214, 1.2)=1.2 (clipped), 1, min(0.2019, 0.8)=0.2019; row 1 (A=-0.5): 0.5, max(-0.184, -0.4) → 0.4
    want = torch.tensor([[-1.2, -1.0, -E16], [0.5, 0.4, 0.5]])
    assert torch.allclose(pg, want, atol=1e-6)
    assert clipped.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    loss = aggregate_policy_loss(pg, MASK, "grpo", 4)
    assert loss.item() == pytest.approx(((-1.2 - 1.0 - E16) / 3 + (0.5 + 0.4) / 2) / 2, abs=1e-6)
    loss.backward()  # clipped tokens carry no gradient; the others −A·ρ / (len·B)
    assert torch.allclose(logp.grad, torch.tensor([[0.0, -1 / 6, -E16 / 6], [0.25 / 2, 0.0, 0.0]]), atol=1e-6)


def test_dapo_clips_higher_and_averages_over_all_tokens():
    logp = _logp()
    pg, _, clipped = clipped_policy_loss(logp, OLD, A, 0.2, 0.28)
    assert clipped[0, 0] == 0  # 1.2214 < 1.28: inside the clip-higher range
    loss = aggregate_policy_loss(pg, MASK, "dapo", 4)
    assert loss.item() == pytest.approx((-E02 - 1.0 - E16 + 0.5 + 0.4) / 5, abs=1e-6)


def test_dr_grpo_divides_the_token_sum_by_a_constant():
    pg, _, _ = clipped_policy_loss(_logp(), OLD, A, 0.2)
    loss = aggregate_policy_loss(pg, MASK, "dr_grpo", 4)  # B·max_len = 2·4
    assert loss.item() == pytest.approx((-1.2 - 1.0 - E16 + 0.5 + 0.4) / 8, abs=1e-6)


def test_cispo_caps_the_stopped_weight_and_keeps_every_token_s_gradient():
    logp = _logp()
    pg, ratio, clipped = cispo_policy_loss(logp, OLD, A, cap=1.1)
    w = torch.tensor([[1.1, 1.0, E16], [1.0, E1, 1.0]])  # min(ρ, 1.1)
    assert torch.allclose(pg, -(w * A * logp.detach()), atol=1e-6)
    assert pg[0].tolist() == pytest.approx([1.1, 0.5, 2 * E16], abs=1e-6)
    assert clipped.tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    loss = aggregate_policy_loss(pg, MASK, "cispo", 4)
    assert loss.item() == pytest.approx((1.1 + 0.5 + 2 * E16 - 0.15 - 0.6 * E1) / 5, abs=1e-6)
    loss.backward()  # d/dlogp = −sg(w)·A / N: the capped token (PPO-clip would give 0) still learns
    assert torch.allclose(logp.grad, -(w * A) * MASK / 5, atol=1e-6)
    assert logp.grad[0, 0].item() == pytest.approx(-1.1 / 5, abs=1e-6)


def test_an_unknown_variant_names_the_known_ones():
    with pytest.raises(ValueError, match="grpo, dapo, dr_grpo, cispo"):
        aggregate_policy_loss(torch.zeros(1, 1), torch.ones(1, 1), "ppo2", 1)


@pytest.mark.parametrize("variant", ["grpo", "dapo", "dr_grpo", "cispo"])
def test_each_variant_trains_with_two_updates_per_rollout(variant, rl_data, demo_sft_run, tmp_path):
    """The second update on a rollout sees π ≠ π_old (ratio/mean ≠ 1) and the run completes."""
    from core.train import run_training
    from tests.fixtures.rl import rl_config
    from tests.fixtures.train import one_thread, read_events

    run_dir = tmp_path / "run"
    cfg = rl_config(run_dir, demo_sft_run, [rl_data["rl"]], "grpo", max_steps=2, batch_size=2,
                    method_options={"loss": variant, "num_generations": 4, "updates_per_rollout": 2,
                                    "max_new_tokens": 12, "sample_every": 0}, **{"optim.lr": 1e-2})
    with one_thread():
        assert run_training(cfg) == 0, read_events(run_dir)[-1]
    metrics = {e["step"]: e["metrics"] for e in read_events(run_dir) if e["type"] == "metric"}
    assert metrics[1]["ratio/mean"] == pytest.approx(1.0, abs=1e-5)  # first update: π = π_old
    assert abs(metrics[2]["ratio/mean"] - 1.0) > 1e-4 and math.isfinite(metrics[2]["loss"])
