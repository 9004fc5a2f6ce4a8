"""Agentic RL (`agent`): multi-turn episodes with real tool execution, masks that keep tool responses out of the
loss, the upstream reward terms, and a run that trains and resumes."""
from __future__ import annotations

import json

import pytest

from core.rl.agent import Episode, _advance, agent_reward, gt_share, total_reward
from core.tools import builtin_registry

CALC = builtin_registry().schemas(["calculate_math"])


def _task(question: str, gt: list) -> dict:
    return {"conversations": [{"role": "system", "content": "You can use tools.", "tools": json.dumps(CALC)},
                              {"role": "user", "content": question}], "gt": gt}


def _item(tok, question="What is 256 * 37?", gt=(9472,)):
    from core.tokenizer.messages import normalize_messages

    msgs, tools = normalize_messages(_task(question, list(gt))["conversations"])
    return {"messages": msgs, "tools": tools, "gt": list(gt)}


def _episode(tok, item, thinking=False):
    ids = tok.apply_chat_template(item["messages"], tools=item["tools"], add_generation_prompt=True,
                                  enable_thinking=thinking, tokenize=True)
    return Episode(list(ids), thinking, [dict(m) for m in item["messages"]])


def test_a_tool_call_is_executed_and_its_response_carries_no_loss(tiny_tokenizer):
    tok, registry, item = tiny_tokenizer, builtin_registry(), _item(tiny_tokenizer)
    ep = _episode(tok, item)
    call = '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "256 * 37"}}\n</tool_call>'
    _advance(ep, item, tok.encode(call) + [tok.eos_id], tok, registry, last_turn=False, budget=10_000)
    assert not ep.done and ep.valid_calls == 1 and ep.invalid_calls == 0
    generated = len(tok.encode(call)) + 1
    assert ep.response_mask[:generated] == [1] * generated and set(ep.response_mask[generated:]) == {0}
    glue = tok.decode(ep.response_ids[generated:], skip_special_tokens=False)
    assert "<tool_response>" in glue and "9472" in glue and "<|im_start|>assistant" in glue
    # the sequence is exactly what the template renders for the conversation so far (history re-rendered alike)
    whole = tok.decode(ep.prompt_ids + ep.response_ids, skip_special_tokens=False)
    want = tok.apply_chat_template(ep.messages, tools=item["tools"], add_generation_prompt=True,
                                   enable_thinking=False)
    assert whole == want
    answer = "256 × 37 = 9472."
    _advance(ep, item, tok.encode(answer) + [tok.eos_id], tok, registry, last_turn=False, budget=10_000)
    assert ep.done and not ep.unfinished and ep.final_text == answer and ep.response_mask[-1] == 1
    terms = agent_reward(ep, item["gt"], ep.response_ids)
    assert terms["answer"] == 2.5 and terms["tool_alignment"] == 0.5 and terms["unfinished"] == 0.0
    # the answer restates the call's expression: upstream's word-level penalty sees no repeated 3-gram in it
    assert terms["tags"] == 0.0 and terms["repetition"] == 0.0
    assert total_reward(terms) == pytest.approx(3.0)


def test_calling_at_the_turn_limit_is_unfinished_and_bad_calls_cost(tiny_tokenizer):
    tok, registry, item = tiny_tokenizer, builtin_registry(), _item(tiny_tokenizer)
    ep = _episode(tok, item)
    text = '<tool_call>{"name": "no_such_tool", "arguments": {}}</tool_call><tool_call>{"name": "calcul'
    _advance(ep, item, tok.encode(text), tok, registry, last_turn=True, budget=10_000)
    assert ep.done and ep.unfinished and ep.valid_calls == 0 and ep.invalid_calls == 1 and ep.unbalanced_tags == 1
    terms = agent_reward(ep, item["gt"], ep.response_ids)
    # raw −1.0, −0.5, −0.5: together past the bound (0.4 × 2.5 for one gt item), so scaled down alike to −1.0
    assert terms["tool_alignment"] == pytest.approx(-0.5) and terms["unfinished"] == pytest.approx(-0.25)
    assert terms["tags"] == pytest.approx(-0.25) and terms["answer"] == 0.0
    assert total_reward(terms) == pytest.approx(-1.0)


def test_an_answer_without_calls_scores_length_and_thinking(tiny_tokenizer):
    tok, registry, item = tiny_tokenizer, builtin_registry(), _item(tiny_tokenizer)
    ep = _episode(tok, item, thinking=True)
    text = "I should multiply 256 by 37 carefully.\n</think>\n\nIt is 9472."
    _advance(ep, item, tok.encode(text) + [tok.eos_id], tok, registry, last_turn=False, budget=10_000)
    assert ep.done and ep.final_text == "It is 9472."
    terms = agent_reward(ep, item["gt"], ep.response_ids)
    # raw +0.5, +1.0, +0.25 = 1.75, scaled into the bound of 1.0 in proportion
    assert terms["length"] == pytest.approx(0.5 / 1.75) and terms["think_length"] == pytest.approx(1 / 1.75)
    assert terms["think_close"] == pytest.approx(0.25 / 1.75)
    assert terms["tool_alignment"] == 0.0 and terms["answer"] == 2.5 and total_reward(terms) == pytest.approx(3.5)


def test_ground_truth_matches_numbers_within_1e_6_and_text_case_insensitively():
    assert gt_share("The result is 9,472.0000001 exactly", [9472]) == 1.0
    assert gt_share("about 3.14", [3.1416]) == 0.0
    assert gt_share("That is 5 KILOMETRES", ["5 kilometres", 7]) == 0.5


def test_groups_carry_an_answer_signal_only_when_their_answers_differ():
    from core.rl.agent import answer_signal

    assert answer_signal([0.0, 0.0, 2.5, 0.0, 2.5, 2.5, 0.0, 0.0], 2) == 0.25  # groups: [0,0] [2.5,0] [2.5,2.5] [0,0]
    assert answer_signal([2.5] * 4 + [1.25, 1.25, 1.25, 1.25], 4) == 0.0  # all right; all half right
    assert answer_signal([0.0, 1.25, 1.25, 1.25], 4) == 1.0


def test_agent_training_runs_with_real_tools_and_logs_each_reward_term(tiny_sft_checkpoint, tmp_path):
    """... and, as this model never answers a product, warns after NO_SIGNAL_STEPS steps whose groups' answers
    never differed (once, naming the check to run)."""
    from core.train import run_training
    from core.rl.agent import NO_SIGNAL_STEPS
    from tests.fixtures.rl import rl_config, write_agent_tasks
    from tests.fixtures.train import one_thread, read_events

    data = write_agent_tasks(tmp_path / "agent.jsonl")
    run_dir = tmp_path / "run"
    cfg = rl_config(run_dir, tiny_sft_checkpoint, [data], "agent", max_steps=NO_SIGNAL_STEPS + 1, batch_size=2,
                    eval_every=NO_SIGNAL_STEPS + 1,
                    method_options={"num_generations": 2, "max_new_tokens": 16, "max_turns": 2,
                                    "thinking_ratio": 0.5, "sample_every": 1, "samples_logged": 2},
                    **{"data.eval_files": [str(data)], "data.eval_batches": 1})
    with one_thread():
        assert run_training(cfg) == 0, read_events(run_dir)[-1]
    events = read_events(run_dir)
    metrics = [e["metrics"] for e in events if e["type"] == "metric"]
    assert {"reward/answer", "reward/repetition", "tool_calls/valid", "kl", "loss"} <= set(metrics[0])
    assert [m["reward/answer"] for m in metrics] == [0.0] * (NO_SIGNAL_STEPS + 1)
    assert [m["advantages/groups_with_answer_signal"] for m in metrics] == [0.0] * (NO_SIGNAL_STEPS + 1)
    [warned] = [e for e in events if e["type"] == "warning" and "answers differed" in e["message"]]
    # raised inside the NO_SIGNAL_STEPS-th step; a warning carries the number of steps completed
    assert warned["step"] == NO_SIGNAL_STEPS - 1 and "minimind eval tools" in warned["message"]
    assert [e for e in events if e["type"] == "sample"] and [e for e in events if e["type"] == "eval"]
    evals = [e["metrics"] for e in events if e["type"] == "eval"][-1]
    assert {"eval/accuracy", "eval/reward", "eval/valid_calls", "eval/turns"} <= set(evals)


def test_the_transcript_shows_each_turn_and_its_tool_responses(tiny_tokenizer):
    tok, registry, item = tiny_tokenizer, builtin_registry(), _item(tiny_tokenizer)
    ep = _episode(tok, item)
    call = '<tool_call>{"name": "calculate_math", "arguments": {"expression": "256 * 37"}}</tool_call>'
    _advance(ep, item, tok.encode(call) + [tok.eos_id], tok, registry, last_turn=False, budget=10_000)
    _advance(ep, item, tok.encode("It is 9472.") + [tok.eos_id], tok, registry, last_turn=False, budget=10_000)
    assert ep.transcript() == f'{call}\n[tool] {{"result": 9472}}\nIt is 9472.'


def _agent_run(run_dir, init, tasks, steps: int, overrides: tuple[str, ...] = ()) -> list[dict]:
    """bench/calculator_gain.py's agent run (every default but 2 prompts × G 4, two turns of up to 32 tokens) on
    one thread; the metric events."""
    from bench.calculator_gain import agent_run
    from tests.fixtures.train import one_thread

    with one_thread():
        return agent_run(run_dir, init, tasks, steps, overrides)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~150 s idle, ~195 s beside two busy loops; a fixture that retrains all three seeds ~3×
def test_agent_rl_at_the_default_rate_keeps_a_strong_models_held_out_accuracy(calculator_agent, tmp_path):
    """A model that generalises (it answers calculator calls it never saw, by copying numbers) trained by agent RL
    for 60 steps at the method's default rate keeps its held-out accuracy, within two cases of 64. It starts at or
    near 100 %, so RL can only lose here; measured 64/64 → 64 after 60 steps, and → 63, 64, 63 after 100 steps
    over three RL seeds (2026-12-06). That the scoring sees a fall when there is one is the next test's control
    (the same scoring, the reward's sign flipped: 19 → 0)."""
    from bench.agent_gain import score_cases
    from tests.fixtures.train import one_thread

    sft, tasks, held_out = calculator_agent["sft"], calculator_agent["rl"], calculator_agent["held_out"]
    before = calculator_agent["before"]  # at least 58 of 64: the fixture's model copies

    metrics = _agent_run(tmp_path / "agent", sft, tasks, 60)
    assert metrics[0]["lr"] == pytest.approx(1e-3 * 3e-7 / 1e-5, rel=0.05)  # upstream's RL/SFT ratio × the SFT's
    # there was something to learn: groups with right and wrong answers in at least a tenth of the steps
    assert sum(m["advantages/groups_with_answer_signal"] > 0 for m in metrics) >= 6
    assert max(m["kl"] for m in metrics) > 0  # the policy moved
    with one_thread():
        kept = sum(score_cases(tmp_path / "agent", held_out))
    assert kept >= before - 2, (before, kept)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # shares the module's `calculator_agent` fixture (see the test above); ~45 s of its own
def test_agent_rl_at_the_default_rate_raises_an_under_trained_models_held_out_accuracy_and_an_inverted_reward_does_not(
        calculator_agent, tmp_path, monkeypatch):
    """The same SFT run's early checkpoints are under-trained. The start is `bench.calculator_gain.choose_start`'s:
    the first checkpoint that answers between 8 and 36 of the 64 *validation* calls (step 20: 14 of 64; step 10
    answers none), so the held-out calls it is scored on play no part in choosing it. It often writes half a call
    or miscopies the tool's result. 60 agent steps at the method's default rate (3e-5 from the SFT's 1e-3) on the
    training prompts must raise it by at least 10 of the 64 held-out calls. Measured (2026-12-07, CPU): from step
    20 (19 of 64 held-out), 19 → 45 and 19 → 42 over two RL seeds; from step 40 (30 of 64) 30 → 45; from step 30
    (49 of 64) only 49 → 53, as the headroom shrinks. The control, 30 steps of the same run with the reward's sign
    flipped, must end below where it started (measured 19 → 0, and 30 → 9 from step 40): the gain comes from what
    the reward rewards, not from any update."""
    import core.rl.agent as agent
    from bench.agent_gain import score_cases
    from bench.calculator_gain import choose_start
    from tests.fixtures.train import one_thread

    tasks, held_out = calculator_agent["rl"], calculator_agent["held_out"]
    with one_thread():
        checkpoint, scores = choose_start(calculator_agent)
        before = sum(score_cases(checkpoint, held_out))
    metrics = _agent_run(tmp_path / "agent", checkpoint, tasks, 60)
    assert metrics[0]["lr"] == pytest.approx(3e-5, rel=0.05)  # the default: the init run's 1e-3 × 3e-7 / 1e-5
    with one_thread():
        after = sum(score_cases(tmp_path / "agent", held_out))
    assert after >= before + 10, (scores, before, after)

    monkeypatch.setattr(agent, "total_reward", lambda terms: -float(sum(terms.values())))
    _agent_run(tmp_path / "inverted", checkpoint, tasks, 30)
    with one_thread():
        inverted = sum(score_cases(tmp_path / "inverted", held_out))
    assert inverted < before, (scores, before, after, inverted)
