"""Train a byte-level BPE tokenizer the way MiniMind does (trainer/train_tokenizer.py), streaming the corpus."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from core.tokenizer.corpus import check_files, count_records, iter_records
from core.tokenizer.special_tokens import CONTROL_TOKENS, QWEN2_SPLIT, RESERVED_TOKENS
from core.tokenizer.tokenizer import MiniMindTokenizer

Progress = Callable[[int, "int | None"], None]
PROGRESS_INTERVAL_S = 0.25


PRE_TOKENIZERS = {"gpt2": "GPT-2's split (MiniMind's own tokenizers)",
                  "qwen2": "Qwen2's split: one token per digit (numbers copy exactly)"}


def new_backend(pre_tokenizer: str = "gpt2") -> Tokenizer:
    """An untrained MiniMind tokenizer: BPE over bytes, no normalizer, no post-processor, split by GPT-2's regex
    (MiniMind's; `ByteLevel(use_regex=True)`) or Qwen2's (`pre_tokenizer="qwen2"`: digits one by one)."""
    backend = Tokenizer(models.BPE())
    if pre_tokenizer == "gpt2":
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre_tokenizer == "qwen2":
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    else:
        raise ValueError(f"unknown pre_tokenizer {pre_tokenizer!r}; choose one of: {', '.join(PRE_TOKENIZERS)}")
    backend.decoder = decoders.ByteLevel()
    return backend


def train_tokenizer(files, vocab_size: int = 6400, out_dir: str | Path | None = None,
                    progress: Progress | None = None, max_records: int | None = None,
                    pre_tokenizer: str = "gpt2") -> MiniMindTokenizer:
    """Train on `files` (.jsonl in any MiniMind format, or .txt) and return the tokenizer (saved to `out_dir`).

    `progress(done_records, total)` is called a few times a second while the corpus is read, and once with
    done == total when reading ends; the merges are computed after that. An exception raised by `progress`
    (e.g. a cancel request) stops training and propagates. The result may be smaller than `vocab_size` when the corpus runs out of pairs.
    """
    minimum = 256 + len(RESERVED_TOKENS)
    if vocab_size < minimum:
        raise ValueError(f"vocab_size {vocab_size} is too small: the 256 byte symbols and "
                         f"{len(RESERVED_TOKENS)} reserved tokens need at least {minimum}")
    if max_records is not None and max_records < 1:
        raise ValueError(f"max_records must be a positive number, got {max_records}")
    paths = check_files(files)
    total = _count(paths, max_records)
    if total == 0:
        raise ValueError(f"no records in {', '.join(map(str, paths))}; the files are empty")

    backend = new_backend(pre_tokenizer)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in RESERVED_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        # tokenizers draws its bars on stdout (bare newlines when it is not a terminal), which would corrupt
        # a worker's JSON event stream: only let it draw for an interactive caller with no callback.
        show_progress=progress is None and sys.stdout.isatty(),
    )
    backend.train_from_iterator(_texts(paths, max_records, total, progress), trainer=trainer, length=total)
    backend = _demote_tags(backend)
    tokenizer = MiniMindTokenizer(backend)
    if out_dir is not None:
        tokenizer.save(out_dir)
    return tokenizer


def _count(paths: list[Path], max_records: int | None) -> int:
    total = 0
    for path in paths:
        left = None if max_records is None else max_records - total
        if left == 0:
            break
        total += count_records(path, left)
    return total


def _texts(paths, max_records, total, progress) -> Iterator[str]:
    done, last = 0, 0.0
    for path in paths:
        for text in iter_records(path):
            if max_records is not None and done >= max_records:
                break
            done += 1
            if text:
                yield text
            if progress is not None and time.monotonic() - last >= PROGRESS_INTERVAL_S:
                last = time.monotonic()
                progress(done, total)
    if progress is not None:
        progress(done, total)


def _demote_tags(backend: Tokenizer) -> Tokenizer:
    """Mark the think and tool tags as non-control added tokens (BpeTrainer makes every reserved token special)."""
    data = json.loads(backend.to_str())
    for token in data["added_tokens"]:
        if token["content"] not in CONTROL_TOKENS:
            token["special"] = False
    backend = Tokenizer.from_str(json.dumps(data, ensure_ascii=False))
    ids = [backend.token_to_id(t) for t in RESERVED_TOKENS]
    assert ids == list(range(len(RESERVED_TOKENS))), f"reserved token ids moved: {ids}"
    return backend
