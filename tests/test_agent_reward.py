"""The agent reward is checked for what it rewards: correctness dominates every shaping term, shaping judges the
final answer's words (not tool-call JSON), and group normalisation cannot blow near-ties up to the size of right
against wrong (issue: agent RL made the demo model worse through exactly that)."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config.rl import AgentConfig, GRPOConfig
from core.rl.agent import ANSWER_WEIGHT, TERMS, Episode, agent_reward, repetition_penalty, total_reward
from core.rl.losses import group_advantages

GT_VALUES = (28, 9472, 1776, "Paris", 3.5)


@st.composite
def episodes(draw, gt: list):
    """An episode with any shaping (calls, tags, thinking, length, repetition) whose answer holds a drawn subset of
    `gt`."""
    found = draw(st.lists(st.booleans(), min_size=len(gt), max_size=len(gt)))
    filler = draw(st.sampled_from(["", "The answer is", "so so so so so so so", "x" * 900, "= = = = = = ="]))
    answer = " ".join([filler] + [str(v) for v, f in zip(gt, found) if f])
    calls = draw(st.integers(0, 3))
    invalid = draw(st.integers(0, 2)) if calls else 0
    thinking = draw(st.booleans())
    think = draw(st.sampled_from(["", "short", "I should compute this with the calculator first. " * 3]))
    last = (think + "</think>" * draw(st.integers(0, 2)) + answer) if thinking else answer
    ep = Episode(prompt_ids=[1], thinking=thinking, messages=[], turns=["<tool_call>{}</tool_call>"] * calls + [last],
                 final_text=answer.strip(), valid_calls=calls, invalid_calls=invalid,
                 unbalanced_tags=draw(st.integers(0, 3)), unfinished=draw(st.booleans()) if calls else False,
                 done=True)
    return ep, sum(found) / len(gt)


@st.composite
def groups(draw):
    gt = draw(st.lists(st.sampled_from(GT_VALUES), min_size=1, max_size=3, unique=True))
    size = draw(st.sampled_from([2, 4, 6, 8]))
    return gt, [draw(episodes(gt)) for _ in range(size)]


@settings(max_examples=300, deadline=None)
@given(groups())
def test_a_more_correct_episode_never_scores_or_is_advantaged_below_a_less_correct_one(group):
    gt, eps = group
    terms = [agent_reward(ep, gt) for ep, _ in eps]
    totals = [total_reward(t) for t in terms]
    for t, (_, share) in zip(terms, eps):
        assert set(t) == set(TERMS)  # every term on every episode (and so on every rank)
        assert t["answer"] == ANSWER_WEIGHT * share
    for scale in ("group", "batch", "none"):
        adv = group_advantages(torch.tensor(totals), len(eps), scale=scale, std_floor=0.25).tolist()
        for (_, si), ri, ai in zip(eps, totals, adv):
            for (_, sj), rj, aj in zip(eps, totals, adv):
                if si > sj:
                    assert ri > rj, (si, sj, ri, rj)
                    assert ai > aj, (scale, si, sj, ai, aj)


def test_the_answer_style_sft_teaches_costs_nothing_and_a_loop_costs_the_cap():
    assert repetition_penalty("140 / 5 = 28.") == 0.0  # digit-level token ids repeat here; words do not
    assert repetition_penalty("37 * 48 = 1776. 37 * 48 = 1776.") > 0.0
    assert repetition_penalty("the cat the cat the cat the cat the cat the cat") == 0.5
    # tool-call JSON in earlier turns is never judged: only the final answer's words are
    ep = Episode([1], False, [], turns=['<tool_call>{"name": "calculate_math", "arguments": {"expression": '
                                        '"140 / 5"}}</tool_call>' * 3, "140 / 5 = 28."],
                 final_text="140 / 5 = 28.", valid_calls=1, done=True)
    assert agent_reward(ep, [28])["repetition"] == 0.0


def test_near_tied_groups_get_a_small_fraction_of_a_right_wrong_advantage_under_the_defaults():
    """The issue's example group: four correct answers whose rewards differ by a repetition hair. Group-std scaling
    turned 0.017 into A = −1.71; the defaults (batch std with a floor) keep it a small fraction of right vs wrong."""
    tied = torch.tensor([2.854, 2.837, 2.854, 2.854])
    assert group_advantages(tied, 4, scale="group").abs().max() > 1.5  # what went wrong before
    for opts in (AgentConfig(), GRPOConfig()):
        floor = opts.std_floor
        right_wrong = torch.tensor([ANSWER_WEIGHT, 0.0, 0.0, 0.0])
        gap = group_advantages(right_wrong, 4, scale=opts.scale_rewards, std_floor=floor)
        gap = float(gap[0] - gap[1])
        a = group_advantages(tied, 4, scale=opts.scale_rewards, std_floor=floor)
        assert float(a.max() - a.min()) <= 0.1 * gap, (opts.scale_rewards, a.tolist(), gap)
        # the same tied group beside a right/wrong group in one batch: still small
        both = group_advantages(torch.cat([right_wrong, tied]), 4, scale=opts.scale_rewards, std_floor=floor)
        assert float(both[4:].max() - both[4:].min()) <= 0.1 * float(both[0] - both[1])
