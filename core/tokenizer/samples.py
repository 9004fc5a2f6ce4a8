"""Fixed sample texts for comparing tokenizers: characters per token (higher = better compression).

MiniMind's README quotes about 4-5 English and 1.5-1.7 Chinese characters per token for its 6400-token vocab.
"""
from __future__ import annotations

SAMPLES = {
    "English": (
        "The quick brown fox jumps over the lazy dog. A language model reads text as a sequence of tokens, "
        "and a good tokenizer turns common words into single tokens so that more text fits into the same "
        "context window. Training a small model on a laptop is slow, but it teaches how every part works."
    ),
    "Chinese": (
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。语言模型把文本读作一串词元，好的分词器会把常用的词"
        "合并成一个词元，这样同样长的上下文可以放下更多的文字。"
    ),
}


def chars_per_token(tokenizer, samples: dict[str, str] = SAMPLES) -> dict[str, float]:
    """{sample name: characters / tokens} for `tokenizer` (anything with `encode(text) -> ids`)."""
    return {name: len(text) / max(1, len(tokenizer.encode(text))) for name, text in samples.items()}
