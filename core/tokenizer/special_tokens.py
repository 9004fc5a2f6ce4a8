"""The reserved tokens of MiniMind tokenizers, and the tags of the minimind-3 conversation form.

Ids 0-2 are the control tokens (MiniMind v2 and v3 alike). Tokenizers trained here reserve the think and tool
tags right after them, as atomic non-control tokens: they survive `decode(skip_special_tokens=True)`, so
reasoning and tool calls stay visible to people, parsers and reward functions (as in Qwen3 and MiniMind v3).
"""
PAD_TOKEN = "<|endoftext|>"   # id 0, also unk
BOS_TOKEN = "<|im_start|>"    # id 1, opens every chat turn
EOS_TOKEN = "<|im_end|>"      # id 2, closes every chat turn

THINK_START, THINK_END = "<think>", "</think>"                                      # ids 3, 4
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"                      # ids 5, 6
TOOL_RESPONSE_START, TOOL_RESPONSE_END = "<tool_response>", "</tool_response>"      # ids 7, 8

CONTROL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)
THINK_TOKENS = (THINK_START, THINK_END)
TOOL_TOKENS = (TOOL_CALL_START, TOOL_CALL_END, TOOL_RESPONSE_START, TOOL_RESPONSE_END)
# Order = ids of a tokenizer trained here. Tokenizers trained before the tool tags existed hold only the first 5.
RESERVED_TOKENS = CONTROL_TOKENS + THINK_TOKENS + TOOL_TOKENS
