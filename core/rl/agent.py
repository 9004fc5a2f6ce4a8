"""Multi-turn tool-use episodes (MiniMind v3 `train_agent.py` / `rollout_engine.py`, reference §4.3) and their reward.

An episode starts from a prompt conversation whose system message declares `tools`. Each turn the policy
generates; every `<tool_call>` it writes is run by the tool registry (core/tools: time and size limits, errors
become results the model reads), the call and its results are appended to the conversation, and generation
continues — up to `max_turns` turns. The response is kept as token ids: the policy's own tokens (mask 1) and the
template glue plus tool responses between turns (mask 0: no loss, no KL). A turn without a call ends the
episode; reaching the turn limit while still calling tools marks it unfinished.

All episodes of a batch advance turn by turn together: one batched generation per turn for the ones still open.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.infer.answer_format import AnswerFormat
from core.infer.chat_output import CALL_CLOSE, CALL_OPEN, THINK_CLOSE, parse_chat_output, parse_tool_call
from core.infer.constraint import GuidanceConstraint
from core.rl.rewards import normalise_text
from core.rl.transcript import write_transcript

_CALL_BODY = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class Episode:
    prompt_ids: list[int]
    thinking: bool
    messages: list[dict]                    # the prompt conversation, then each assistant turn and tool response
    response_ids: list[int] = field(default_factory=list)
    response_mask: list[int] = field(default_factory=list)   # 1 = the policy generated this token
    turns: list[str] = field(default_factory=list)           # the text of each generated turn
    results: list[list[str]] = field(default_factory=list)   # the tool responses after each turn
    final_text: str = ""                    # the answer of the last turn (reasoning and tags removed)
    valid_calls: int = 0
    invalid_calls: int = 0
    unbalanced_tags: int = 0                # |#<tool_call> − #</tool_call>| summed over turns
    unfinished: bool = False
    done: bool = False

    def transcript(self) -> str:
        """The episode for people (the Curves pane's rollout browser): each generated turn as written, each tool
        response after it marked `[tool]` (core.rl.transcript reads it back)."""
        return write_transcript(self.turns, self.results, self.unfinished)


def _count_calls(text: str, declared: set[str], registry) -> tuple[int, int, list]:
    """(valid, invalid, parsed calls): a call is valid when it parses, names a declared tool the registry has,
    and its arguments pass that tool's check."""
    valid, invalid, calls = 0, 0, []
    for body in _CALL_BODY.findall(text):
        call = parse_tool_call(body.strip())
        ok = call is not None and call.name in declared and call.name in registry.tools
        if ok:
            try:
                registry.tools[call.name].check_arguments(call.arguments_dict())
            except Exception:
                ok = False
        valid, invalid = valid + ok, invalid + (not ok)
        if call is not None:
            calls.append(call)
    return valid, invalid, calls


def _glue_ids(tokenizer, before: list[dict], after: list[dict], tools, thinking: bool, ended: bool) -> list[int]:
    """The tokens between the end of a generated turn and the next generation: what the template renders for the
    tool responses and the next generation prompt (plus the turn's end if generation stopped without it)."""
    rendered = tokenizer.apply_chat_template(before, tools=tools)
    full = tokenizer.apply_chat_template(after, tools=tools, add_generation_prompt=True, enable_thinking=thinking)
    if not full.startswith(rendered):  # the template re-rendered the history differently: keep going safely
        raise ValueError("chat template does not extend the conversation by appending; agent rollouts need it")
    turn_end = "\n" if ended else tokenizer.decode([tokenizer.eos_id]) + "\n"
    return tokenizer.encode(turn_end + full[len(rendered):])


def run_episodes(policy, tokenizer, items: list[dict], thinking: list[bool], registry, max_turns: int,
                 max_new_tokens: int, temperature: float, top_p: float = 1.0, top_k: int = 0,
                 max_response_tokens: int | None = None, constrain: bool = False) -> list[Episode]:
    """Play one episode per item (`{"messages", "tools"}` normalised) with the given thinking switches.
    `constrain`: every turn is decoded under tool_choice "auto" for the item's tools (text, or calls to those tools
    with arguments valid for their schemas; core.infer.answer_format)."""
    from core.rl.rollout import sample

    episodes = []
    for item, think in zip(items, thinking):
        ids = tokenizer.apply_chat_template(item["messages"], tools=item["tools"], add_generation_prompt=True,
                                            enable_thinking=think, tokenize=True)
        episodes.append(Episode(list(ids), think, [dict(m) for m in item["messages"]]))
    budget = max_response_tokens or max_turns * max_new_tokens * 2
    for turn in range(max_turns):
        open_eps = [e for e in episodes if not e.done]
        if not open_eps:
            break
        constraints = [_turn_constraint(policy, tokenizer, items[episodes.index(e)], e.thinking)
                       for e in open_eps] if constrain else None
        gens = sample(policy, tokenizer, [e.prompt_ids + e.response_ids for e in open_eps], max_new_tokens,
                      temperature, top_p, top_k, constraints)
        for ep, item, gen in ((e, items[episodes.index(e)], g) for e, g in zip(open_eps, gens)):
            _advance(ep, item, list(gen), tokenizer, registry, last_turn=turn == max_turns - 1, budget=budget)
    return episodes


def _turn_constraint(policy, tokenizer, item: dict, thinking: bool):
    """One turn's grammar: the generation prompt opens <think> each turn when the episode thinks."""
    return GuidanceConstraint(tokenizer, policy.config.vocab_size, AnswerFormat.from_openai(item["tools"]), thinking)


def _advance(ep: Episode, item: dict, gen: list[int], tokenizer, registry, last_turn: bool, budget: int) -> None:
    ep.response_ids += gen
    ep.response_mask += [1] * len(gen)
    ended = bool(gen) and gen[-1] == tokenizer.eos_id
    text = tokenizer.decode(gen[:-1] if ended else gen, skip_special_tokens=False)
    ep.turns.append(text)
    ep.unbalanced_tags += abs(text.count(CALL_OPEN) - text.count(CALL_CLOSE))
    declared = {t.get("function", t).get("name") for t in item["tools"] or []}
    valid, invalid, calls = _count_calls(text, declared, registry)
    ep.valid_calls, ep.invalid_calls = ep.valid_calls + valid, ep.invalid_calls + invalid
    out = parse_chat_output(text, in_reasoning=ep.thinking)  # the generation prompt opened <think> each turn
    ep.final_text = out.content.strip()
    if not calls:
        ep.done = True
        return
    if last_turn or len(ep.response_ids) >= budget:
        ep.done = ep.unfinished = True
        return
    before = ep.messages + [out.assistant_message()]
    responses = registry.answer(out.tool_calls)
    ep.results.append([m["content"] for m in responses])
    after = before + responses
    glue = _glue_ids(tokenizer, before, after, item["tools"], ep.thinking, ended)
    ep.messages = after
    ep.response_ids += glue
    ep.response_mask += [0] * len(glue)


# ---- reward (reference §4.3; each term is its own metric) -----------------------------------------------------
# Correctness dominates: the answer term moves in steps of ANSWER_WEIGHT/len(gt), and the shaping terms together
# are scaled into ±SHAPING_SHARE of one such step, so within a group an episode that finds more of the ground
# truth always outranks one that finds less, whatever its tags, length or calls (tests/test_agent_reward.py).
ANSWER_WEIGHT = 2.5
SHAPING_SHARE = 0.4   # both ends together span 0.8 of the smallest correctness step: a gap of 0.2 always remains
REPETITION_CAP = 0.5
TERMS = ("answer", "tool_alignment", "unfinished", "length", "think_length", "think_close", "tags", "repetition")
_WORD = re.compile(r"\w+|[^\w\s]")


def gt_share(text: str, gt: list) -> float:
    """Share of the ground-truth items found in `text`: a number equal within 1e-6 to one the text contains, or a
    case-insensitive substring."""
    if not gt:
        return 0.0
    numbers = [float(n) for n in _NUMBER.findall(text.replace(",", ""))]
    norm = normalise_text(text)
    found = 0
    for item in gt:
        try:
            target = float(item)
            hit = any(abs(n - target) <= 1e-6 for n in numbers)
        except (TypeError, ValueError):
            hit = normalise_text(str(item)) in norm
        found += hit
    return found / len(gt)


def answer_words(text: str) -> list[str]:
    """Upstream's tokens for the repetition penalty: whole words and numbers (`140` is one), each punctuation mark
    one token, lower case."""
    return _WORD.findall(text.lower())


def repetition_penalty(text: str, n: int = 3, cap: float = REPETITION_CAP) -> float:
    """min(cap, duplicated n-grams × 2·cap / n-grams) over the answer's words (upstream `rep_penalty`): "140 / 5 =
    28." costs nothing, an answer looping a phrase costs up to `cap`."""
    words = answer_words(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return min(cap, (len(grams) - len(set(grams))) * 2 * cap / len(grams))


def _shaping(ep: Episode) -> dict[str, float]:
    """The raw shaping terms (every key of TERMS but `answer`, 0.0 where a term does not apply, so every episode
    and every rank reports the same keys)."""
    terms = dict.fromkeys(TERMS[1:], 0.0)
    terms["tags"] = -0.5 * ep.unbalanced_tags
    terms["repetition"] = -repetition_penalty(ep.final_text)   # the final answer only, never the tool-call JSON
    if ep.valid_calls + ep.invalid_calls > 0:
        return terms
    terms["length"] = 0.5 if 5 <= len(ep.final_text) <= 800 else -0.5
    if ep.thinking:
        last = ep.turns[-1] if ep.turns else ""
        think = last.split(THINK_CLOSE)[0] if THINK_CLOSE in last else ""
        terms["think_length"] = 1.0 if 20 <= len(think.strip()) <= 300 else -0.5
        terms["think_close"] = 0.25 if last.count(THINK_CLOSE) == 1 else -0.25
    return terms


def agent_reward(ep: Episode, gt: list, response_ids: list[int] | None = None) -> dict[str, float]:
    """The reward terms of one episode (every key of TERMS); their sum is the reward.

    answer: ANSWER_WEIGHT × share of `gt` found in the final answer. With tool calls: tool_alignment +0.5 when the
    valid calls equal len(gt), else −0.5 × the gap (invalid calls count into it), unfinished −0.5 at the turn
    limit. Without: length ±0.5 (5–800 characters) and, with thinking, think_length and think_close. Always: tags
    −0.5 per unbalanced `<tool_call>`, repetition −(upstream's 3-gram penalty on the answer's words, ≤ 0.5). The
    shaping terms are scaled down together when their sum leaves ±SHAPING_SHARE × ANSWER_WEIGHT / len(gt).
    `response_ids` is accepted for older callers and unused: no term judges token ids."""
    shaping = _shaping(ep)
    if ep.valid_calls + ep.invalid_calls > 0:
        gap = abs(ep.valid_calls - len(gt)) + ep.invalid_calls
        shaping["tool_alignment"] = 0.5 if gap == 0 else -0.5 * gap
        shaping["unfinished"] = -0.5 if ep.unfinished else 0.0
    bound = SHAPING_SHARE * ANSWER_WEIGHT / max(1, len(gt))
    total = sum(shaping.values())
    if abs(total) > bound:
        shaping = {k: v * bound / abs(total) for k, v in shaping.items()}
    return {"answer": ANSWER_WEIGHT * gt_share(ep.final_text, gt), **shaping}


def total_reward(terms: dict[str, float]) -> float:
    """The episode's reward: the sum of its terms (bounded by construction: answer in [0, 2.5], shaping within
    ±SHAPING_SHARE × 2.5)."""
    return float(sum(terms.values()))


NO_SIGNAL_STEPS = 10  # steps in a row whose groups' answers never differ before a run warns (once)


def answer_signal(answers: list[float], group_size: int) -> float:
    """Share of groups whose episodes' answer terms are not all equal: the groups whose advantages carry
    correctness, not only shaping. Groups that are all right or all wrong teach nothing about answering."""
    groups = [answers[i:i + group_size] for i in range(0, len(answers), group_size)]
    return sum(max(g) - min(g) > 1e-9 for g in groups) / max(len(groups), 1)


@dataclass
class AnswerSignal:
    """Per step: the share of groups with an answer signal, and a warning the first time `NO_SIGNAL_STEPS` steps
    in a row had none (the model's samples never find, or never miss, the answers: RL can learn only the shaping
    terms; docs/rl.md, "Before an RL run")."""
    silent: int = 0
    warned: bool = False

    def update(self, answers: list[float], group_size: int) -> tuple[float, str | None]:
        share = answer_signal(answers, group_size)
        self.silent = 0 if share > 0 else self.silent + 1
        if self.silent < NO_SIGNAL_STEPS or self.warned:
            return share, None
        self.warned = True
        right = sum(a > 0 for a in answers) / max(len(answers), 1)
        return share, (f"agent: for {NO_SIGNAL_STEPS} steps in a row no group's answers differed ({right:.0%} of the "
                       "last step's episodes found the answer): RL learns answers only from groups where some "
                       "samples are right and some wrong. Check what sampling finds before training on: minimind "
                       "eval tools --model INIT --cases TASKS --samples 8 (docs/rl.md, 'Before an RL run')")
