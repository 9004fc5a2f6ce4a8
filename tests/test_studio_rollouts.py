"""The Curves pane's rollout browser lists each RL sample by its question and shows the selected one whole.

Samples are made by the trainer's own code: a two-step agent run writes real `sample` events, an episode played
with scripted model output (core.rl.agent._advance, real calculator) gives a transcript with a tool call, the
raw token decode older agent runs logged gives the pre-transcript form, and PromptDataset renders the prompt of
a plain GRPO task (no system turn in the data: the template adds its default one).
"""
from __future__ import annotations

import json

from core.rl.agent import Episode, _advance
from core.rl.transcript import prompt_question, read_sample
from core.tools import builtin_registry

CALL = '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "256 * 37"}}\n</tool_call>'


def _played_episode(tok, thinking: bool = False) -> tuple[Episode, list]:
    """A calculator episode: a tool call, its result, then the answer (model output scripted, tools real)."""
    from core.tokenizer.messages import normalize_messages

    tools = json.dumps(builtin_registry().schemas(["calculate_math", "get_current_time"]))
    msgs, tools = normalize_messages([{"role": "system", "content": "You can use tools.", "tools": tools},
                                      {"role": "user", "content": "What is 256 * 37?"}])
    item = {"messages": msgs, "tools": tools}
    ids = tok.apply_chat_template(msgs, tools=tools, add_generation_prompt=True, enable_thinking=thinking,
                                  tokenize=True)
    ep = Episode(list(ids), thinking, [dict(m) for m in msgs])
    registry = builtin_registry()
    think = (lambda thought: f"{thought}\n</think>\n\n") if thinking else (lambda thought: "")
    for text in (think("I need the calculator.") + CALL, think("It returned 9472.") + "256 × 37 = 9472."):
        _advance(ep, item, tok.encode(text) + [tok.eos_id], tok, registry, last_turn=False, budget=10_000)
    return ep, tools


def _pane(qtbot, context, store, run_id: str, samples: list[dict]):
    from studio.panes.curves.view import CurvesPane

    store.create_run(run_id, run_dir=context.workspace.runs_dir / run_id, name=run_id, method="agent",
                     status="completed")
    store.add_events(run_id, [{"type": "sample", "step": 1, "samples": samples}])
    pane = CurvesPane(context)
    qtbot.addWidget(pane)
    pane.show_run(run_id)
    return pane


def _column(pane, col: int) -> list[str]:
    return [pane.samples.item(r, col).text() for r in range(pane.samples.rowCount())]


def test_a_real_agent_runs_rollouts_are_listed_by_their_question(qtbot, context, store, tiny_sft_checkpoint,
                                                                  tmp_path):
    from core.train import run_training
    from studio.store.recovery import import_run_dir
    from tests.fixtures.rl import rl_config, write_agent_tasks
    from tests.fixtures.train import one_thread, read_events

    data = write_agent_tasks(tmp_path / "agent.jsonl", pairs=((12, 13), (7, 91)))
    run_dir = tmp_path / "agent-run"
    cfg = rl_config(run_dir, tiny_sft_checkpoint, [data], "agent", max_steps=1, batch_size=2,
                    method_options={"num_generations": 2, "max_new_tokens": 8, "max_turns": 2,
                                    "sample_every": 1, "samples_logged": 4})
    with one_thread():
        assert run_training(cfg) == 0, read_events(run_dir)[-1]
    run_id = import_run_dir(store, run_dir)
    stored = store.samples(run_id)
    assert stored and all(s["prompt"].startswith("<|im_start|>system") for s in stored)  # the reason for this

    from studio.panes.curves.view import CurvesPane

    pane = CurvesPane(context)
    qtbot.addWidget(pane)
    pane.show_run(run_id)
    assert pane.samples.horizontalHeaderItem(1).text() == "Question"
    assert set(_column(pane, 1)) <= {"What is 12 * 13?", "What is 7 * 91?"} and len(_column(pane, 1)) == len(stored)
    pane.samples.setCurrentCell(0, 1)
    detail = pane.rollouts.detail.toPlainText()
    assert "calculate_math" in detail and "What is" in detail
    assert "function signatures" not in detail  # the template's tools block is folded into the tool names


def test_the_detail_shows_tools_by_name_then_the_call_and_its_response_as_blocks(qtbot, context, store,
                                                                                 tiny_tokenizer):
    tok = tiny_tokenizer
    ep, _ = _played_episode(tok, thinking=True)
    sample = {"prompt": tok.decode(ep.prompt_ids), "completion": ep.transcript(), "reward": 2.75,
              "rewards": {"answer": 2.5}}  # exactly what the agent recipe logs
    pane = _pane(qtbot, context, store, "agent-1", [sample])
    assert _column(pane, 1) == ["What is 256 * 37?"]
    pane.samples.setCurrentCell(0, 0)
    html, text = pane.rollouts.detail.toHtml(), pane.rollouts.detail.toPlainText()
    assert "calculate_math, get_current_time" in text and "You can use tools." in text
    assert "tool call · calculate_math" in text and '{"expression": "256 * 37"}' in text
    assert "tool response" in text and '{"result": 9472}' in text and "256 × 37 = 9472." in text
    assert "reasoning" in text and "I need the calculator." in text and "It returned 9472." in text
    assert "<tool_call>" not in text and "<|im_start|>" not in text and "reward 2.750" in text
    assert text.index("What is 256 * 37?") < text.index("tool call") < text.index("tool response") < \
        text.index("256 × 37 = 9472.")
    assert "Select a rollout" not in html


def test_rollouts_logged_by_older_agent_runs_read_the_same(tiny_tokenizer):
    tok = tiny_tokenizer
    ep, _ = _played_episode(tok)
    old = read_sample(tok.decode(ep.prompt_ids), tok.decode(ep.response_ids, skip_special_tokens=False))
    new = read_sample(tok.decode(ep.prompt_ids), ep.transcript())
    assert old.question == new.question == "What is 256 * 37?"
    assert [m["role"] for m in old.completion] == [m["role"] for m in new.completion] == ["assistant", "tool",
                                                                                          "assistant"]
    assert old.completion[0]["tool_calls"][0]["function"]["name"] == "calculate_math"
    assert old.completion[1]["content"] == new.completion[1]["content"] == '{"result": 9472}'
    assert old.completion[2]["content"] == new.completion[2]["content"] == "256 × 37 = 9472."


def test_a_plain_grpo_prompt_and_text_that_is_not_chatml_still_show_their_question(tiny_tokenizer, tmp_path):
    from core.data.datasets import PromptDataset

    path = tmp_path / "rl.jsonl"
    path.write_text(json.dumps({"conversations": [{"role": "user", "content": "Name a prime number."},
                                                  {"role": "assistant", "content": ""}], "answer": "7"}) + "\n",
                    encoding="utf-8")
    item = PromptDataset([path], tiny_tokenizer, max_prompt_len=256)[0]
    assert item["prompt"].startswith("<|im_start|>system")  # the template's default system prompt
    view = read_sample(item["prompt"], "7 is prime.")
    assert view.question == prompt_question(item["prompt"]) == "Name a prime number."
    assert [m["role"] for m in view.prompt] == ["system", "user"]
    assert view.completion == [{"role": "assistant", "content": "7 is prime."}]
    assert prompt_question("Translate: hello\n") == "Translate: hello"  # a prompt without chat turns
    assert read_sample("", "").question == ""
