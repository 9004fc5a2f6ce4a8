"""The reserved tokens of MiniMind tokenizers, the tags of the minimind-3 conversation form, and the Qwen2 split
regex (a tokenizer's fixed text facts, read by both training and loading).

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

# Qwen2's split regex (its tokenizer.json, and llama.cpp's LLAMA_VOCAB_PRE_TYPE_QWEN2): like GPT-2's, but every
# digit is its own piece and a space is never glued to a digit, so " 272", "=272" and "\"272" share the tokens
# 2 7 2. A model then copies a number from a question into a tool call (or from a tool result into its answer)
# token for token; with GPT-2's split "Ġ272" must become "2" "72", which a tiny model fails to learn.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
