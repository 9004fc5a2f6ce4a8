"""Byte-level BPE tokenizer training/loading and the ChatML chat template (see docs/tokenizer.md)."""
from core.tokenizer.chat_template import CHAT_TEMPLATE, DEFAULT_SYSTEM_PROMPT
from core.tokenizer.tokenizer import (BOS_TOKEN, CONTROL_TOKENS, EOS_TOKEN, PAD_TOKEN, RESERVED_TOKENS,
                                      THINK_TOKENS, MiniMindTokenizer)
from core.tokenizer.train import train_tokenizer

__all__ = ["MiniMindTokenizer", "train_tokenizer", "CHAT_TEMPLATE", "DEFAULT_SYSTEM_PROMPT", "PAD_TOKEN",
           "BOS_TOKEN", "EOS_TOKEN", "THINK_TOKENS", "CONTROL_TOKENS", "RESERVED_TOKENS"]
