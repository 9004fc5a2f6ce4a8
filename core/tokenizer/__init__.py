"""Byte-level BPE tokenizer training/loading, the chat template and the minimind-3 message form (docs/tokenizer.md)."""
from core.tokenizer.chat_template import CHAT_TEMPLATE, DEFAULT_SYSTEM_PROMPT, render, thinking_kwargs
from core.tokenizer.messages import MessageError, check_messages, normalize_messages
from core.tokenizer.special_tokens import (BOS_TOKEN, CONTROL_TOKENS, EOS_TOKEN, PAD_TOKEN, RESERVED_TOKENS,
                                           THINK_END, THINK_START, THINK_TOKENS, TOOL_CALL_END, TOOL_CALL_START,
                                           TOOL_RESPONSE_END, TOOL_RESPONSE_START, TOOL_TOKENS)
from core.tokenizer.tokenizer import MiniMindTokenizer
from core.tokenizer.train import train_tokenizer

__all__ = ["MiniMindTokenizer", "train_tokenizer", "CHAT_TEMPLATE", "DEFAULT_SYSTEM_PROMPT", "render",
           "thinking_kwargs", "normalize_messages", "check_messages", "MessageError", "PAD_TOKEN", "BOS_TOKEN",
           "EOS_TOKEN", "THINK_START", "THINK_END", "TOOL_CALL_START", "TOOL_CALL_END", "TOOL_RESPONSE_START",
           "TOOL_RESPONSE_END", "THINK_TOKENS", "TOOL_TOKENS", "CONTROL_TOKENS", "RESERVED_TOKENS"]
