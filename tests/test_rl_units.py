"""Unit specifications of the RL/preference maths: each against a hand computation."""
from __future__ import annotations

import math

import pytest
import torch

from core.rl import losses as L
from core.rl.value import BetaValueTracker


def test_dpo_loss_matches_hand_computation():
    # Unequal reference margins, so a dropped reference term (z = β·[1, −1]) or a flipped one
    # (z = β·[2.5, −3]) gives a different loss and different implicit rewards.
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])  # policy margins: 1, −1
    rc, rr = torch.tensor([-3.0, -6.0]), torch.tensor([-4.5, -4.0])  # reference margins: 1.5, −2
    loss, cr, rj = L.dpo_loss(pc, pr, rc, rr, beta=0.5)
    # z = β·[(π_c − π_r) − (ref_c − ref_r)] = 0.5·[1 − 1.5, −1 − (−2)] = [−0.25, 0.5]; −log σ(z) = log(1 + e^−z)
    expected = (math.log(1 + math.exp(0.25)) + math.log(1 + math.exp(-0.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert cr.tolist() == pytest.approx([0.0, 0.5])   # β·(π_c − ref_c) = 0.5·[0, 1]
    assert rj.tolist() == pytest.approx([0.25, 0.0])  # β·(π_r − ref_r) = 0.5·[0.5, 0]


def test_sequence_logprobs_sum_and_length_normalised():
    logits = torch.zeros(1, 4, 2)
    logits[0, 1, 1] = math.log(3.0)  # position 1 predicts token 1 with p = 3/4
    labels = torch.tensor([[-100, -100, 1, 0]])  # targets at positions 2 and 3 (predicted from 1 and 2)
    s = L.sequence_logprobs(logits, labels)
    assert s.item() == pytest.approx(math.log(0.75) + math.log(0.5), rel=1e-6)
    m = L.sequence_logprobs(logits, labels, average=True)
    assert m.item() == pytest.approx((math.log(0.75) + math.log(0.5)) / 2, rel=1e-6)


def test_group_advantages_normalise_within_each_group():
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    a = L.group_advantages(r, 4, eps=0.0 + 1e-12)
    assert a[:4].tolist() == pytest.approx([1.0, -1.0, 1.0, -1.0], abs=1e-5)
    assert a[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # a group with one reward teaches nothing
    assert L.group_advantages(r, 4, scale=False)[:4].tolist() == pytest.approx([0.5, -0.5, 0.5, -0.5])
    with pytest.raises(ValueError, match="groups of 3"):
        L.group_advantages(r, 3)


def test_clipped_policy_loss_clips_only_beyond_epsilon():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.1, 1.5, 0.5]]))
    adv = torch.tensor([[1.0]])
    loss, ratio, clipped = L.clipped_policy_loss(logp, old, adv, 0.2)
    assert ratio.tolist()[0] == pytest.approx([1.1, 1.5, 0.5], rel=1e-6)
    # A>0: min(ρA, clip(ρ)A): 1.1 stays, 1.5 → 1.2 (clipped), 0.5 stays (the unclipped term is smaller)
    assert (-loss).tolist()[0] == pytest.approx([1.1, 1.2, 0.5], rel=1e-6)
    assert clipped.tolist()[0] == [0.0, 1.0, 0.0]
    loss_neg, _, clipped_neg = L.clipped_policy_loss(logp, old, -adv, 0.2)
    assert (-loss_neg).tolist()[0] == pytest.approx([-1.1, -1.5, -0.8], rel=1e-6)
    assert clipped_neg.tolist()[0] == [0.0, 0.0, 1.0]
    # the gradient through a clipped token is zero
    lp = logp.clone().requires_grad_(True)
    L.clipped_policy_loss(lp, old, adv, 0.2)[0].sum().backward()
    assert lp.grad[0, 1].item() == 0.0 and lp.grad[0, 0].item() != 0.0


def test_k3_kl_is_exact_formula_and_zero_at_equality():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.5])
    kl = L.k3_kl(logp, ref)
    assert kl[0].item() == 0.0
    assert kl[1].item() == pytest.approx(math.exp(0.5) - 0.5 - 1.0, rel=1e-6)
    assert (L.k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_gae_with_gamma_one_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 0.6, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = L.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv.tolist()[0] == pytest.approx([0.8, 0.6, 0.4, 0.0])
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 1.0, 0.0])
    adv0, _ = L.gae(rewards, values, mask, gamma=1.0, lam=0.0)  # one-step TD errors
    assert adv0.tolist()[0] == pytest.approx([0.2, 0.2, 0.4, 0.0])


def test_value_loss_clipping_takes_the_larger_error():
    v, old, ret, m = torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[2.0]]), torch.ones(1, 1)
    assert L.value_loss(v, ret, m).item() == pytest.approx(0.5)
    assert L.value_loss(v, ret, m, old, clip=0.2).item() == pytest.approx(0.5 * 1.8 ** 2)


def test_spo_tracker_update_follows_the_minimind_rule():
    t = BetaValueTracker(r_min=-3, r_max=3)
    assert (t.alpha, t.beta, t.baseline01) == (1.0, 1.0, 0.5)
    assert t.baseline == 0.0
    t.update(torch.tensor([3.0, 0.0]), mean_logprob=-2.0)  # r̃ = 1 and 0.5 → mean 0.75; first ρ = 0.9
    assert t.rho == 0.9
    assert (t.alpha, t.beta) == pytest.approx((0.9 + 0.75, 0.9 + 0.25))
    a, b = t.alpha, t.beta
    t.update(torch.tensor([-3.0]), mean_logprob=-2.03)  # Δ = 0.03 → ρ = 2^(−0.5)
    rho = 2 ** -0.5
    assert t.rho == pytest.approx(rho)
    assert (t.alpha, t.beta) == pytest.approx((rho * a, rho * b + 1.0))
    t.update(torch.tensor([0.0]), mean_logprob=0.0)  # a big policy move: ρ floors at 0.5
    assert t.rho == 0.5
    t2 = BetaValueTracker(-3, 3)
    t2.load_state_dict(t.state_dict())
    assert t2.state_dict() == t.state_dict() and t2.baseline == t.baseline


def test_the_frozen_reference_computes_what_the_policy_does_under_bf16_autocast(tmp_path):
    """KL and DPO margins must be exactly 0 at step 0: the reference runs the policy's numerics (fp32 weights under
    the same autocast), not a bf16 copy whose norms and residual stream stay in bf16."""
    import torch

    from core.config.model import ModelConfig
    from core.model import MiniMindForCausalLM
    from core.precision import autocast
    from core.train.recipe import RunContext, frozen_reference

    torch.manual_seed(0)
    policy = MiniMindForCausalLM(ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                             num_key_value_heads=2, vocab_size=128))
    ctx = RunContext(run_dir=tmp_path, device=torch.device("cpu"), autocast_dtype=torch.bfloat16)
    ref = frozen_reference(policy, None, ctx)
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad(), autocast(ctx.device, torch.bfloat16):
        a, b = policy(ids).logits, ref(ids).logits
    assert next(ref.parameters()).dtype == torch.float32 and torch.equal(a, b)
    bf16_copy = frozen_reference(policy, None, RunContext(run_dir=tmp_path, device=torch.device("cpu"))).bfloat16()
    with torch.no_grad(), autocast(ctx.device, torch.bfloat16):
        assert not torch.equal(a, bf16_copy(ids).logits)  # what the reference computed before


def test_one_update_per_rollout_uses_the_training_pass_as_the_old_policy_with_the_same_gradient(tmp_path):
    """With updates_per_rollout 1 the policy's separate scoring pass is skipped (one forward in three, as TRL): the
    training pass's detached log-probs are the old ones, and loss and gradients equal those from a stored pass."""
    import torch

    from core.config.model import ModelConfig
    from core.model import MiniMindForCausalLM
    from core.rl.losses import clipped_policy_loss, group_advantages, masked_mean
    from core.rl.rollout import old_logprobs, response_logprobs, score_rollout

    class Tok:
        pad_id = 0

    torch.manual_seed(0)
    policy = MiniMindForCausalLM(ModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                             num_key_value_heads=2, vocab_size=128))
    prompts, completions = [[5, 6, 7], [8, 9]] * 2, [[10, 11, 12], [13], [14, 15], [16, 17, 18, 19]]
    total = torch.tensor([1.0, 0.0, 0.5, 0.2])
    grads = []
    for keep in (True, False):
        r = score_rollout(policy, policy, Tok(), [""] * 4, prompts, completions, [""] * 4, total, {}, 1.0, "cpu",
                          keep_old_logp=keep)
        assert (r.old_logp is None) == (not keep)
        policy.zero_grad()
        logp = response_logprobs(policy, r)
        adv = group_advantages(r.rewards, 2)[:, None]
        pg, ratio, _ = clipped_policy_loss(logp, old_logprobs(r, logp), adv)
        masked_mean(pg, r.response_mask, dim=1).mean().backward()
        assert torch.allclose(ratio, torch.ones_like(ratio))
        grads.append([p.grad.clone() for p in policy.parameters() if p.grad is not None])
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(*grads))
