"""Agentic RL with tools (MiniMind v3 `train_agent.py`; reference §4.3): multi-turn tool-use episodes, rewarded
against the record's ground truth, trained with GRPO-style group advantages and any of the GRPO loss variants
(CISPO by default, as upstream).

Each prompt (a conversation whose system message declares `tools`, plus `gt`: the values the final answer must
contain) is played `num_generations` times (core/rl/agent.py): the policy generates, its `<tool_call>`s run on
the built-in tool registry (core/tools), the results are appended as tool turns, for up to `max_turns` turns.
Only the policy's own tokens carry loss and KL. A share `thinking_ratio` of episodes opens thinking.

Reward (core.rl.agent.agent_reward; every term is logged as `reward/<term>`, every episode on every rank reports
every term): answer 2.5 × share of `gt` found (substring, or a number equal within 1e-6); with tool calls,
tool_alignment +0.5 when the valid calls equal len(gt), else −0.5 × the gap, and unfinished −0.5 at the turn
limit; without, length ±0.5 (5–800 characters) and, with thinking, think_length (+1 for 20–300 characters, else
−0.5) and think_close (±0.25 for exactly one `</think>`); tags −0.5 per unbalanced `<tool_call>`; repetition
−(upstream's 3-gram penalty on the final answer's words, ≤ 0.5). The shaping terms together are scaled into
±0.4 of one correctness step, so a more correct episode always outranks a less correct one in its group.
"""
from __future__ import annotations

import dataclasses

import torch

from core.train.recipes.grpo import GRPO
from core.train.recipes.onpolicy import on_policy


class ToolEpisodes:
    """The agent's rollout source: tool-use episodes on the built-in tool registry, scored by the agent's own
    reward terms; greedy episodes on held-out tasks for evaluation. Checks every task at set-up.

    Logs `advantages/groups_with_answer_signal` per step and warns once when the answers stop differing
    (core.rl.agent.AnswerSignal)."""

    def __init__(self, recipe):
        from core.rl.agent import AnswerSignal
        from core.tools import builtin_registry

        self.recipe, self.registry, self.signal = recipe, builtin_registry(), AnswerSignal()
        for where, dataset in (("data.files", recipe.train_dataset), ("data.eval_files", recipe.eval_dataset)):
            for i in range(len(dataset) if dataset is not None else 0):
                item = dataset[i]
                if not item["tools"] or not isinstance(item.get("gt"), list):
                    raise ValueError(f"{where}: record {i + 1} has no tools on its system message or no `gt` list; "
                                     "agent tasks are conversations with tools plus the ground truth (docs/rl.md)")
                if len(item["prompt_ids"]) >= recipe.options.max_prompt_len:
                    raise ValueError(f"{where}: record {i + 1}'s prompt is {len(item['prompt_ids'])}+ tokens, over "
                                     f"method_options.max_prompt_len={recipe.options.max_prompt_len}; raise it (the "
                                     "tools block must stay whole)")

    def _episodes(self, items: list[dict], thinking: list[bool], temperature: float, max_new_tokens: int):
        from core.rl.agent import run_episodes

        r, o = self.recipe, self.recipe.options
        return run_episodes(r.policy, r.tokenizer, items, thinking, self.registry, o.max_turns, max_new_tokens,
                            temperature, o.top_p, o.top_k, constrain=o.constrain_tools)

    def sample(self, items: list[dict]):
        from core.rl.agent import TERMS, agent_reward, total_reward
        from core.rl.rollout import score_rollout

        r, o = self.recipe, self.recipe.options
        items = [it for it in items for _ in range(r.samples_per_prompt)]
        thinking = (torch.rand(len(items)) < o.thinking_ratio).tolist()
        with torch.no_grad():
            episodes = self._episodes(items, thinking, o.temperature, o.max_new_tokens)
        terms = [agent_reward(ep, it["gt"], ep.response_ids) for ep, it in zip(episodes, items)]
        breakdown = {k: [t[k] for t in terms] for k in TERMS}  # the same keys on every rank: DDP reduces them
        breakdown["valid_calls"] = [float(ep.valid_calls) for ep in episodes]
        total = torch.tensor([total_reward(t) for t in terms])
        texts = [ep.transcript() for ep in episodes]  # what sample events show: turns and tool responses
        return score_rollout(r.policy, r.reference, r.tokenizer, [r.tokenizer.decode(ep.prompt_ids) for ep in episodes],
                             [ep.prompt_ids for ep in episodes], [ep.response_ids for ep in episodes], texts, total,
                             breakdown, o.temperature, r.ctx.device, r.autocast,
                             [ep.response_mask for ep in episodes], keep_old_logp=r.keep_old_logp)

    def metrics(self, m: dict, rollout) -> dict:
        m.pop("reward/valid_calls", None)
        calls = rollout.breakdown["valid_calls"]
        m["tool_calls/valid"] = sum(calls) / max(len(calls), 1)
        share, warning = self.signal.update(rollout.breakdown["answer"], self.recipe.samples_per_prompt)
        m["advantages/groups_with_answer_signal"] = share
        if warning and self.recipe.ctx.is_main:
            self.recipe.ctx.warn(warning)
        return m

    def evaluate(self, batches) -> dict:
        """Greedy episodes on held-out tasks: exact accuracy (every gt item found), reward, valid calls, turns."""
        from core.rl.agent import agent_reward, gt_share, total_reward

        tot = {k: [0.0, 0.0] for k in ("eval/accuracy", "eval/reward", "eval/valid_calls", "eval/turns")}
        for batch in batches:
            items = batch["items"]
            episodes = self._episodes(items, [False] * len(items), 0.0, self.recipe.options.eval_max_new_tokens)
            for ep, it in zip(episodes, items):
                for key, value in (("eval/accuracy", float(gt_share(ep.final_text, it["gt"]) == 1.0)),
                                   ("eval/reward", total_reward(agent_reward(ep, it["gt"], ep.response_ids))),
                                   ("eval/valid_calls", float(ep.valid_calls)), ("eval/turns", len(ep.turns))):
                    tot[key][0] += value
                    tot[key][1] += 1
        return {k: tuple(v) for k, v in tot.items()}


AGENT = dataclasses.replace(GRPO, rollouts=ToolEpisodes)  # GRPO's advantages and losses, over tool episodes
RECIPE = on_policy(AGENT)
