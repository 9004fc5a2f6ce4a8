"""The one parser of model output: <think> reasoning, <tool_call> JSON, content — whole and streamed."""
from __future__ import annotations

import json
import random

import pytest

from core.infer.chat_output import ChatOutputParser, parse_chat_output, parse_tool_call, collect

ANSWER = ("<think>\nThe user wants 2+3.\n</think>\n\nLet me compute.\n"
          '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+3"}}\n</tool_call>\n'
          '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')


def test_splits_reasoning_content_and_tool_calls():
    out = parse_chat_output(ANSWER)
    assert out.reasoning == "The user wants 2+3."
    assert out.content == "Let me compute."
    assert [(c.name, json.loads(c.arguments)) for c in out.tool_calls] == [
        ("calculator", {"expression": "2+3"}), ("get_time", {})]
    assert all(c.id.startswith("call_") for c in out.tool_calls) and out.tool_calls[0].id != out.tool_calls[1].id


def test_text_without_tags_passes_through_unchanged():
    text = "  Hello,\n\n world 🙂 < not a tag > and a < b\n"
    out = parse_chat_output(text)
    assert out.content == text and out.reasoning == "" and out.tool_calls == []


def test_a_prompt_that_opened_thinking_starts_in_reasoning():
    assert ChatOutputParser.for_prompt("<|im_start|>assistant\n<think>\n").state == "reasoning"
    assert ChatOutputParser.for_prompt("<|im_start|>assistant\n<think>\n\n</think>\n\n").state == "content"
    out = parse_chat_output("\nweighing it\n</think>\n\nIt is 5.", in_reasoning=True)
    assert (out.reasoning, out.content) == ("weighing it", "It is 5.")


@pytest.mark.parametrize("seed", range(20))
def test_any_split_into_pieces_gives_the_whole_text_result(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(ANSWER)), rng.randrange(1, 40)))
    pieces = [ANSWER[a:b] for a, b in zip([0] + cuts, cuts + [len(ANSWER)])]
    streamed, whole = collect(ChatOutputParser(), pieces), parse_chat_output(ANSWER)
    assert (streamed.reasoning, streamed.content) == (whole.reasoning, whole.content)
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [(c.name, c.arguments) for c in whole.tool_calls]


def test_partial_tags_are_held_back_until_they_resolve():
    parser = ChatOutputParser()
    assert [d.text for d in parser.feed("Hi <thi")] == ["Hi"]          # "<thi" (and the space) may be a tag
    assert [(d.kind, d.text) for d in parser.feed("nk>\nhmm")] == [("reasoning", "hmm")]
    assert [(d.kind, d.text) for d in parser.feed("</think>ok <b")] == [("content", "ok <b")]
    assert parser.finish() == []


def test_a_complete_tool_call_is_emitted_once_its_closing_tag_arrives():
    parser = ChatOutputParser()
    assert parser.feed('<tool_call>{"name": "f", "argu') == []
    deltas = parser.feed('ments": {"x": 1}}</tool_call>')
    assert [(d.kind, d.call.name, d.call.arguments) for d in deltas] == [("tool_call", "f", '{"x": 1}')]


@pytest.mark.parametrize("body", ['not json', '{"arguments": {}}', '{"name": "", "arguments": {}}',
                                  '{"name": "f", "arguments": [1]}', '[1, 2]', '{"name": 5}'])
def test_a_malformed_call_stays_visible_as_text(body):
    out = parse_chat_output(f"<tool_call>{body}</tool_call>")
    assert out.tool_calls == [] and out.content == f"<tool_call>{body}</tool_call>"


def test_an_unterminated_call_at_the_end_is_shown_as_text():
    out = parse_chat_output('ok\n<tool_call>{"name": "f"')
    assert out.tool_calls == [] and out.content == 'ok<tool_call>{"name": "f"'


def test_string_arguments_and_parameters_alias_are_accepted():
    assert parse_tool_call('{"name": "f", "arguments": "{\\"a\\": 1}"}').arguments == '{"a": 1}'
    assert parse_tool_call('{"name": "f", "parameters": {"a": "是"}}').arguments == '{"a": "是"}'
    assert parse_tool_call('{"name": "f"}').arguments_dict() == {}


def test_assistant_message_round_trips_calls_and_reasoning():
    msg = parse_chat_output(ANSWER).assistant_message()
    assert msg["role"] == "assistant" and msg["reasoning_content"] == "The user wants 2+3."
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["calculator", "get_time"]
    assert msg["tool_calls"][0]["type"] == "function"
