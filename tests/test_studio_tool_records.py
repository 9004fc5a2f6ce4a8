"""Studio views of minimind-3 records: the Datasets pane's bubbles and the pre-flight token view show tools,
reasoning, tool calls and tool responses as their own blocks, with what carries loss."""
from __future__ import annotations

import re

from studio.panes.config.preflight import record_tokens, token_blocks, tokens_html
from studio.widgets.records_html import bubbles, record_html
from tests.fixtures.tool_records import OPENAI_RECORD, REASONING_RECORD, THINK_RECORD, TOOL_RECORD


def plain(html_text: str) -> str:
    return re.sub(r"<[^>]+>", " ", html_text)


def test_bubbles_show_tools_calls_responses_and_reasoning_as_blocks():
    text = plain(record_html(TOOL_RECORD))
    assert "tools" in text and "calculate_math, get_time" in text  # the system message's declared tools
    assert "tool call · calculate_math" in text and "256 * 37" in text
    assert "tool response" in text and "9472" in text
    assert text.count("learned") == 2 and text.count("no loss") == 3  # system, user, tool response
    reasoning = plain(record_html(REASONING_RECORD))
    assert "reasoning" in reasoning and "一加一。" in reasoning
    think = plain(record_html(THINK_RECORD))
    assert "reasoning" in think and "两个三" in think and "&lt;think&gt;" not in think  # the tags are not shown
    openai = plain(bubbles(OPENAI_RECORD["conversations"]))
    assert "tool call · get_time" in openai and "tool call · calculate_math" in openai
    assert "learned" not in openai  # chat view: no loss tags unless asked


def test_bubbles_show_a_record_with_unreadable_tool_json_as_written():
    broken = [{"role": "system", "content": "", "tools": "[{"}, {"role": "user", "content": "q"},
              {"role": "assistant", "content": "", "tool_calls": "[oops"}]
    text = plain(bubbles(broken, show_loss=True))
    assert "[oops" in text and "learned" in text


def test_preflight_cuts_the_record_into_turn_reasoning_call_and_response_blocks(tiny_tokenizer):
    ids, mask = record_tokens(TOOL_RECORD, "sft", tiny_tokenizer)
    blocks = token_blocks(tiny_tokenizer, ids)
    assert [b[0] for b in blocks if b[0] not in ("assistant", "user")] == \
        ["system", "reasoning", "tool call", "tool response", "reasoning"]
    for label, start, end in blocks:
        text = tiny_tokenizer.decode(ids[start:end])
        if label == "tool call":
            assert text.startswith("<tool_call>") and text.endswith("</tool_call>") and mask[start:end].all()
        if label in ("tool response", "system"):
            assert not mask[start:end].any()
    assert blocks[-1][2] == len(ids) and all(a[2] == b[1] for a, b in zip(blocks, blocks[1:]))
    html_text = tokens_html(tiny_tokenizer, ids, mask)
    assert html_text.count('data-loss="1"') == mask.sum() and "tool response" in html_text
