"""minimind-3 records (tools, tool calls, tool responses, reasoning): validation by file:line:field, loss masks
(assistant content, reasoning and tool calls learned; system, user and tool responses never), DPO and RL
prompts with tools."""
from __future__ import annotations

import json

import pytest

from core.data import DataError, DPODataset, PromptDataset, SFTDataset, detect_kind, read_records
from core.data.datasets import carries_loss
from tests.fixtures.tool_records import (CALL, OPENAI_RECORD, REASONING_RECORD, SYSTEM, THINK_RECORD, TOOL_RECORD,
                                         TOOLS)

def write(path, records) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def conv(*messages) -> dict:
    return {"conversations": list(messages)}


def user(text="q"):
    return {"role": "user", "content": text}


def answer(text="a", **extra):
    return {"role": "assistant", "content": text, **extra}


def test_minimind3_records_are_valid_sft(tmp_path):
    path = write(tmp_path / "t2t.jsonl", [TOOL_RECORD, REASONING_RECORD, THINK_RECORD, OPENAI_RECORD])
    assert detect_kind(path) == "sft"
    assert len(list(read_records(path, "sft"))) == 4


BAD = [  # (record, field, words)
    (conv(SYSTEM, user(), answer("", tool_calls="[{oops")), "conversations[2].tool_calls", "invalid JSON"),
    (conv(SYSTEM, user(), answer("", tool_calls='[{"name": "get_time", "arguments": "{x"}]')),
     "conversations[2].tool_calls[0].arguments", "invalid JSON"),
    (conv(SYSTEM, user(), answer("", tool_calls='[{"name": "get_time", "arguments": [1]}]')),
     "conversations[2].tool_calls[0].arguments", "must be an object"),
    (conv(SYSTEM, user(), answer("", tool_calls='[{"name": "get_time"}]')),
     "conversations[2].tool_calls[0].arguments", "missing"),
    (conv(SYSTEM, user(), {"role": "tool", "content": "12:00"}, answer()),
     "conversations[2].role", "a tool response with no tool call before it"),
    (conv(SYSTEM, user(), answer("", tool_calls='[{"name": "send_mail", "arguments": {}}]')),
     "conversations[2].tool_calls[0].name", "calls tool 'send_mail', which the record does not declare"),
    (conv(user(), answer("", tool_calls='[{"name": "get_time", "arguments": {}}]')),
     "conversations[1].tool_calls[0].name", "the record declares no tools"),
    (conv(SYSTEM, user(), CALL, {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}, answer()),
     "conversations[4].role", "more tool responses than the calls"),
    (conv({"role": "system", "content": "", "tools": "[{"}, user(), answer()), "conversations[0].tools",
     "invalid JSON"),
    (conv({"role": "system", "content": "", "tools": [{"description": "no name"}]}, user(), answer()),
     "conversations[0].tools[0]", "tool schema with a name"),
    (conv(user(), answer("a", reasoning_content=5)), "conversations[1].reasoning_content", "must be a string"),
    (conv(user(), answer("<think>r</think>a", reasoning_content="r")), "conversations[1].content",
     "reasoning_content too"),
    (conv(user(), answer("<think>never closed")), "conversations[1].content", "never closes it"),
    (conv({"role": "user", "content": "q", "tools": json.dumps(TOOLS)}, answer()), "conversations[0].tools",
     "belong on the system message"),
    (conv(user(), {"role": "user", "content": "", "tool_calls": "[]x"}, answer()), "conversations[1].tool_calls",
     "only assistant messages"),
]


@pytest.mark.parametrize("record,field,words", BAD, ids=[b[2] for b in BAD])
def test_bad_tool_and_reasoning_parts_name_the_field(tmp_path, record, field, words):
    path = write(tmp_path / "f.jsonl", [TOOL_RECORD, record])
    with pytest.raises(DataError) as info:
        list(read_records(path, "sft"))
    assert (info.value.line, info.value.field) == (2, field)
    assert words in info.value.message


def test_cli_check_names_every_problem_as_file_line_field(tmp_path, capsys):
    from core.cli import main

    path = write(tmp_path / "t2t.jsonl", [TOOL_RECORD] + [b[0] for b in BAD] + [REASONING_RECORD])
    assert main(["data", "check", path]) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert lines == [f"{path}:{i + 2}: {field}: " + lines[i].split(f"{field}: ", 1)[1]
                     for i, (_, field, _) in enumerate(BAD)]
    assert all(words in line for line, (_, _, words) in zip(lines, BAD))
    assert f"2 good records, {len(BAD)} bad" in out.err
    good = write(tmp_path / "good.jsonl", [TOOL_RECORD, REASONING_RECORD, THINK_RECORD, OPENAI_RECORD])
    assert main(["data", "check", good]) == 0


@pytest.fixture(params=["trained", "v3"])
def tokenizer(request, tiny_tokenizer, shared_data):
    if request.param == "trained":
        return tiny_tokenizer
    from core.tokenizer import MiniMindTokenizer
    return MiniMindTokenizer.load(shared_data / "minimind-tokenizers" / "v3")


def learned_text(tok, item, key="labels") -> str:
    return tok.decode([t for t in item[key].tolist() if t != -100])


def test_sft_masks_learn_assistant_reasoning_and_calls_only(tmp_path, tokenizer):
    path = write(tmp_path / "sft.jsonl", [TOOL_RECORD, REASONING_RECORD, THINK_RECORD])
    ds = SFTDataset(path, tokenizer, 1024, tmp_path / "cache")
    empty = "<think>\n\n</think>\n\n"
    assert learned_text(tokenizer, ds[0]) == (
        empty + '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "256 * 37"}}\n</tool_call>'
        "<|im_end|>\n" + empty + "等于 9472。<|im_end|>\n")
    assert learned_text(tokenizer, ds[1]) == "<think>\n一加一。\n</think>\n\n2<|im_end|>\n"
    assert learned_text(tokenizer, ds[2]) == "<think>\n两个三\n</think>\n\n6<|im_end|>\n"
    # the tools block, the user turn and the tool response are in the input but carry no loss
    text = tokenizer.decode(ds[0]["input_ids"].tolist())
    assert "# Tools" in text and '<tool_response>\n{"result":"9472"}\n</tool_response>' in text
    assert [carries_loss(m) for m in TOOL_RECORD["conversations"]] == [False, False, True, False, True]


def test_dpo_sides_with_tools_are_rendered_and_masked(tmp_path, tiny_tokenizer):
    chosen = TOOL_RECORD["conversations"]
    rejected = chosen[:2] + [answer("我不知道。")]
    ds = DPODataset(write(tmp_path / "dpo.jsonl", [{"chosen": chosen, "rejected": rejected}]), tiny_tokenizer, 1024,
                    tmp_path / "cache")
    assert "<tool_call>" in learned_text(tiny_tokenizer, ds[0], "chosen_labels")
    # the rejected side declares tools too, so it is in the minimind-3 form: an empty think block, learned
    assert learned_text(tiny_tokenizer, ds[0], "rejected_labels") == "<think>\n\n</think>\n\n我不知道。<|im_end|>\n"
    assert "# Tools" in tiny_tokenizer.decode(ds[0]["rejected_ids"].tolist())


def test_rl_prompts_carry_the_record_tools(tmp_path, tiny_tokenizer):
    after_call = {"conversations": TOOL_RECORD["conversations"][:4]}  # the model continues after the response
    path = write(tmp_path / "rl.jsonl", [{"conversations": [SYSTEM, user("几点了"), answer("无")]}, after_call])
    assert detect_kind(write(tmp_path / "after-call.jsonl", [after_call])) == "rl"  # a prompt may end with a tool turn
    ds = PromptDataset(path, tiny_tokenizer, max_prompt_len=4096)
    first, second = ds[0], ds[1]
    assert first["tools"] == TOOLS and [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "# Tools" in first["prompt"] and first["prompt"].endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert second["messages"][2]["tool_calls"][0]["name"] == "calculate_math"  # parsed from the JSON string
    assert second["prompt"].endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_tokenizer_corpus_reads_reasoning_and_tool_json():
    from core.tokenizer.corpus import record_text

    text = record_text(TOOL_RECORD, "t2t.jsonl:1") + record_text(REASONING_RECORD, "t2t.jsonl:2")
    assert '"calculate_math"' in text and "256 * 37" in text and "一加一。" in text
