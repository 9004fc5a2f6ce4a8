"""The minimind-3 conversation form: every message form rendered by hand, the same messages through upstream's
own v3 template, the thinking switch, the record normaliser, and atomic added tokens of imported tokenizers."""
from __future__ import annotations

import copy
import json

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from core.tokenizer import (CHAT_TEMPLATE, TOOL_CALL_START, MessageError, MiniMindTokenizer, normalize_messages,
                            render)

TOOLS = [{"type": "function", "function": {"name": "calculate_math", "description": "计算数学表达式",
                                           "parameters": {"type": "object",
                                                          "properties": {"expression": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}]
TOOLS_BLOCK = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
    '{"type": "function", "function": {"name": "calculate_math", "description": "计算数学表达式", "parameters": '
    '{"type": "object", "properties": {"expression": {"type": "string"}}}}}\n'
    '{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}\n'
    "</tools>\n\nFor each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n')
EMPTY_THINK = "<think>\n\n</think>\n\n"

# A record exactly as MiniMind's sft_t2t files store it: tools and tool_calls are JSON strings.
RECORD = [
    {"role": "system", "content": "你是助手", "tools": json.dumps(TOOLS, ensure_ascii=False)},
    {"role": "user", "content": "256 乘以 37 等于多少"},
    {"role": "assistant", "content": "",
     "tool_calls": '[{"name":"calculate_math","arguments":{"expression":"256 * 37"}}]'},
    {"role": "tool", "content": '{"result":"9472"}'},
    {"role": "assistant", "content": "256 乘以 37 等于 9472。"},
]
RECORD_TEXT = (
    "<|im_start|>system\n你是助手\n\n" + TOOLS_BLOCK +
    "<|im_start|>user\n256 乘以 37 等于多少<|im_end|>\n"
    "<|im_start|>assistant\n" + EMPTY_THINK +
    '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "256 * 37"}}\n</tool_call><|im_end|>\n'
    '<|im_start|>user\n<tool_response>\n{"result":"9472"}\n</tool_response><|im_end|>\n'
    "<|im_start|>assistant\n" + EMPTY_THINK + "256 乘以 37 等于 9472。<|im_end|>\n")

# (name, messages, tools, expected text without the generation prompt)
FORMS = [
    ("record form: tools and tool_calls as JSON strings", RECORD, None, RECORD_TEXT),
    ("structured: tools argument, OpenAI-style function wrapper, string arguments, two calls with text",
     [{"role": "user", "content": "几点了？再算 2+2"},
      {"role": "assistant", "content": "好的。", "tool_calls": [
          {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
          {"id": "c2", "type": "function", "function": {"name": "calculate_math",
                                                        "arguments": '{"expression": "2+2"}'}}]},
      {"role": "tool", "content": "12:00"},
      {"role": "tool", "content": "4"}],
     TOOLS,
     "<|im_start|>system\n" + TOOLS_BLOCK +
     "<|im_start|>user\n几点了？再算 2+2<|im_end|>\n"
     "<|im_start|>assistant\n" + EMPTY_THINK + "好的。\n"
     '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>\n'
     '<tool_call>\n{"name": "calculate_math", "arguments": {"expression": "2+2"}}\n</tool_call><|im_end|>\n'
     "<|im_start|>user\n<tool_response>\n12:00\n</tool_response>\n<tool_response>\n4\n</tool_response><|im_end|>\n"),
    ("reasoning_content, no system message (v3 adds no default one)",
     [{"role": "user", "content": "1+1?"},
      {"role": "assistant", "content": "2", "reasoning_content": "\n一加一等于二。\n"}],
     None,
     "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n<think>\n一加一等于二。\n</think>\n\n2<|im_end|>\n"),
    ("<think> inside the content; a plain reply in the same conversation gets an empty block",
     [{"role": "system", "content": "Be brief."},
      {"role": "user", "content": "hi"},
      {"role": "assistant", "content": "hello"},
      {"role": "user", "content": "2*3?"},
      {"role": "assistant", "content": "<think>\ntwo threes\n</think>\n\n6"}],
     None,
     "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
     "<|im_start|>assistant\n" + EMPTY_THINK + "hello<|im_end|>\n<|im_start|>user\n2*3?<|im_end|>\n"
     "<|im_start|>assistant\n<think>\ntwo threes\n</think>\n\n6<|im_end|>\n"),
]


def upstream_v3(shared_data) -> str:
    path = shared_data / "minimind-tokenizers" / "v3" / "tokenizer_config.json"
    return json.loads(path.read_text(encoding="utf-8"))["chat_template"]


def transformers_render(template: str, messages, tools, add_generation_prompt: bool, **kwargs) -> str:
    """Render the way transformers' apply_chat_template does (independent of core.tokenizer's environment)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)
    return env.from_string(template).render(messages=messages, tools=tools,
                                            add_generation_prompt=add_generation_prompt, **kwargs)


@pytest.mark.parametrize("name,messages,tools,expected", FORMS, ids=[f[0].split(":")[0] for f in FORMS])
def test_every_message_form_renders_as_written(name, messages, tools, expected):
    assert render(CHAT_TEMPLATE, messages, tools=tools) == expected
    assert render(CHAT_TEMPLATE, messages, tools=tools, add_generation_prompt=True) == \
        expected + "<|im_start|>assistant\n" + EMPTY_THINK


@pytest.mark.parametrize("name,messages,tools,expected", FORMS, ids=[f[0].split(":")[0] for f in FORMS])
def test_same_text_as_upstream_v3_template(shared_data, name, messages, tools, expected):
    template = upstream_v3(shared_data)
    structured, parsed_tools = normalize_messages(messages, tools)  # what upstream's SFTDataset does first
    for gen in (False, True):
        for switch in ({}, {"open_thinking": True}, {"open_thinking": False}):
            ours = render(CHAT_TEMPLATE, messages, tools=tools, add_generation_prompt=gen, **switch)
            assert ours == transformers_render(template, structured, parsed_tools, gen, **switch)


def test_thinking_switch_under_both_names(shared_data):
    plain = [{"role": "user", "content": "你好"}]
    assert render(CHAT_TEMPLATE, plain, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\n")  # unset: plain ChatML, as models trained on plain data expect
    on = "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n<think>\n"
    off = "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n" + EMPTY_THINK
    for kwargs, expected in (({"enable_thinking": True}, on), ({"open_thinking": True}, on),
                             ({"enable_thinking": False}, off), ({"open_thinking": False}, off)):
        assert render(CHAT_TEMPLATE, plain, add_generation_prompt=True, **kwargs) == expected
        # upstream's v3 template, given the same switch through our tokenizer class
        v3 = MiniMindTokenizer.load(shared_data / "minimind-tokenizers" / "v3")
        assert v3.apply_chat_template(plain, add_generation_prompt=True, **kwargs) == expected


def test_v2_template_understands_enable_thinking(shared_data):
    v2 = MiniMindTokenizer.load(shared_data / "minimind-tokenizers" / "v2")
    text = v2.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  open_thinking=False)
    assert text.endswith("<|im_start|>assistant\n" + EMPTY_THINK)


def test_normaliser_parses_record_strings_and_leaves_input_alone():
    before = copy.deepcopy(RECORD)
    messages, tools = normalize_messages(RECORD)
    assert RECORD == before
    assert tools == TOOLS
    assert messages[2]["tool_calls"] == [{"name": "calculate_math", "arguments": {"expression": "256 * 37"}}]
    assert normalize_messages(messages, tools) == (messages, tools)  # idempotent on the structured form
    assert normalize_messages(RECORD, tools=[TOOLS[1]])[1] == [TOOLS[1]]  # an explicit tools argument wins


def test_normaliser_names_bad_json():
    bad = [{"role": "system", "content": "", "tools": "[{"}, {"role": "user", "content": "x"}]
    with pytest.raises(MessageError, match=r"messages\[0\]\.tools: invalid JSON"):
        normalize_messages(bad)


def test_tokenizer_renders_records_and_tags_are_single_tokens(tiny_tokenizer):
    ids = tiny_tokenizer.apply_chat_template(RECORD, tokenize=True)
    assert ids == tiny_tokenizer.encode(RECORD_TEXT)
    for tag in ("<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"):
        assert tiny_tokenizer.token_to_id(tag) in ids
    assert tiny_tokenizer.encode(TOOL_CALL_START) == [5]


@pytest.mark.parametrize("version,count", [("v2", 3), ("v3", 36)])
def test_imported_tokenizers_keep_every_added_token_atomic(shared_data, version, count):
    tok = MiniMindTokenizer.load(shared_data / "minimind-tokenizers" / version)
    added = tok.special_tokens
    assert len(added) == count and list(added.values()) == list(range(count))
    for token, token_id in added.items():
        ids = tok.encode(f"a{token}b")
        assert ids.count(token_id) == 1 and len(ids) == len(tok.encode("a")) + 1 + len(tok.encode("b")), token
    assert tok.has_tool_tokens == (version == "v3")
    if version == "v3":
        assert {t: added[t] for t in ("<tool_call>", "</think>", "<|buffer9|>")} == \
               {"<tool_call>": 21, "</think>": 26, "<|buffer9|>": 35}
        assert tok.control_ids == set(range(21))  # 21-35 are non-special: they survive skip_special_tokens
        assert tok.decode(tok.encode("<tool_call>x</tool_call>"), skip_special_tokens=True) == \
            "<tool_call>x</tool_call>"


def test_transformers_renders_our_template_the_same(tiny_tokenizer_dir, tiny_tokenizer):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    for _, messages, tools, _ in FORMS:
        structured, parsed = normalize_messages(messages, tools)
        for kwargs in ({}, {"enable_thinking": True}, {"open_thinking": False}):
            assert hf.apply_chat_template(structured, tools=parsed, tokenize=False, add_generation_prompt=True,
                                          **kwargs) == \
                tiny_tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, **kwargs)
