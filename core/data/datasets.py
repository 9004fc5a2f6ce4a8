"""Torch datasets over the token cache: packed pretraining windows, masked SFT conversations, DPO pairs, RL prompts."""
from __future__ import annotations

import hashlib
from pathlib import Path
import numpy as np
import torch
from torch.utils.data import Dataset

from core.data.cache import encode_texts, load_or_build
from core.data.records import DataError, DataReport, read_records
from core.data.sources import check_source
from core.preparation import Preparation
from core.tokenizer.messages import carries_loss, normalize_messages  # noqa: F401 (carries_loss: ChatMasker, per message)

IGNORE = -100  # label of tokens that get no loss (torch CrossEntropyLoss ignore_index)


def _file_list(files) -> list[Path]:
    paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
    if not paths:
        raise ValueError("no data files given")
    for p in paths:
        check_source(p)  # a file, or a folder written by datasets.save_to_disk
    return paths


def _template_hash(tokenizer) -> str:
    return hashlib.sha256(str(getattr(tokenizer, "chat_template", "")).encode()).hexdigest()[:16]


class ChatMasker:
    """Labels for a rendered conversation: learn only the assistant turns.

    MiniMind's rule (dataset/lm_dataset.py, `generate_labels`): every position is -100 except each assistant span,
    from the first token after the ids of "<|im_start|>assistant\\n" up to and including the ids of "<|im_end|>\\n".
    In the minimind-3 form an assistant span holds its `<think>` block and `<tool_call>` JSON, so both are learned;
    tool responses are rendered as a user turn (`<|im_start|>user\\n<tool_response>...`) and never are.
    The spans are found by token ids, not strings, so they line up exactly with what the model sees.
    """

    def __init__(self, tokenizer):
        self.header = np.asarray(tokenizer.encode("<|im_start|>assistant\n"), dtype=np.int64)
        self.end = np.asarray(tokenizer.encode("<|im_end|>\n"), dtype=np.int64)

    def labels(self, ids: np.ndarray) -> np.ndarray:
        return assistant_labels(ids, self.header, self.end)


def masked_segments(messages: list[dict], tokenizer) -> list[tuple[str, bool]]:
    """A conversation as SFT trains on it: its rendered chat template cut into (text, learned) pieces, learned
    where ChatMasker gives the tokens a label (the Datasets pane's mapping preview)."""
    ids = np.asarray(tokenizer.apply_chat_template(messages, tokenize=True), dtype=np.int64)
    learned = ChatMasker(tokenizer).labels(ids) != IGNORE
    segments, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or learned[i] != learned[start]:
            segments.append((tokenizer.decode(ids[start:i].tolist()), bool(learned[start])))
            start = i
    return segments


def find_pattern(ids: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """Start positions of every occurrence of the id sequence `pattern` in `ids` (vectorised per pattern token)."""
    n, m = len(ids), len(pattern)
    if n < m or m == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(ids[: n - m + 1] == pattern[0])
    for k in range(1, m):
        starts = starts[ids[starts + k] == pattern[k]]
    return starts


def assistant_labels(ids, header_ids, end_ids) -> np.ndarray:
    """`ids` with everything outside the assistant spans set to -100 (see ChatMasker)."""
    ids = np.asarray(ids, dtype=np.int64)
    header, end = np.asarray(header_ids, dtype=np.int64), np.asarray(end_ids, dtype=np.int64)
    labels = np.full(len(ids), IGNORE, dtype=np.int64)
    ends = find_pattern(ids, end)
    stop = 0
    for h in find_pattern(ids, header):
        start = h + len(header)
        if h < stop:
            continue
        j = np.searchsorted(ends, start)
        # include <|im_end|>\n; run to the end of the sequence when truncation cut the reply off
        stop = ends[j] + len(end) if j < len(ends) else len(ids)
        labels[start:stop] = ids[start:stop]
    return labels


class PretrainDataset(Dataset):
    """Packed pretraining windows.

    Documents are concatenated as `[bos] + ids + [eos]` into one token stream, which is cut into consecutive windows
    of `seq_len` tokens: no padding, and no token is lost except the tail shorter than one window. Items are
    `{"input_ids", "labels"}` with labels == input_ids (the model shifts internally). A window may hold the end of
    one document and the start of the next; BOS/EOS mark the boundary (attention is not reset at it).
    The cache does not depend on seq_len, so one tokenization serves every window size.
    """

    def __init__(self, files, tokenizer, seq_len: int, cache_dir, on_error: str = "raise",
                 preparation: Preparation | None = None):
        if seq_len < 2:
            raise ValueError("seq_len must be at least 2")
        self.files, self.seq_len = _file_list(files), seq_len
        bos, eos = tokenizer.bos_id, tokenizer.eos_id

        def encode(records):
            ids = encode_texts(tokenizer, [r["text"] for r in records])
            return {"tokens": [[bos] + x + [eos] for x in ids]}, {}

        self.cache = load_or_build(self.files, "pretrain", tokenizer, cache_dir, encode, ("tokens",),
                                   on_error=on_error, preparation=preparation)
        self.num_tokens = int(len(self.tokens))
        self.num_documents = len(self.doc_offsets) - 1
        self.report: DataReport = self.cache.report
        if self.num_tokens < seq_len:
            raise DataError(self.files[0], 0, "(dataset)",
                            f"only {self.num_tokens} tokens, fewer than one window of seq_len={seq_len}; "
                            "add data or lower seq_len")

    @property
    def tokens(self) -> np.ndarray:
        """The whole packed stream (memory-mapped)."""
        return self.cache.tokens("tokens")

    @property
    def doc_offsets(self) -> np.ndarray:
        """Where each document starts in `tokens` (its BOS), plus the stream length at the end."""
        return self.cache.offsets("tokens")

    def __len__(self) -> int:
        return self.num_tokens // self.seq_len

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < len(self):
            raise IndexError(i)
        window = torch.from_numpy(np.asarray(self.tokens[i * self.seq_len:(i + 1) * self.seq_len], dtype=np.int64))
        return {"input_ids": window, "labels": window.clone()}

    @property
    def lengths(self) -> np.ndarray:
        return np.full(len(self), self.seq_len, dtype=np.int64)


class _ChatCache(Dataset):
    """Shared by SFT and DPO: render with the chat template, tokenize, truncate, drop what has nothing to learn."""

    streams: tuple[str, ...] = ()
    kind = ""

    def __init__(self, files, tokenizer, max_len: int, cache_dir, on_error: str = "raise",
                 preparation: Preparation | None = None):
        self.files, self.max_len = _file_list(files), max_len
        self.masker = ChatMasker(tokenizer)

        def encode(records):
            out = {s: [] for s in self.streams}
            counts = {"truncated": 0, "no_target": 0}
            rendered = {s: encode_texts(tokenizer, [tokenizer.apply_chat_template(self._messages(r, s))
                                                    for r in records]) for s in self.streams}
            for j in range(len(records)):
                seqs = [rendered[s][j] for s in self.streams]
                counts["truncated"] += any(len(x) > max_len for x in seqs)
                seqs = [x[:max_len] for x in seqs]
                # A conversation whose assistant tokens were all cut off would give a batch with no target (NaN).
                if any((self.masker.labels(np.asarray(x)) != IGNORE).sum() == 0 for x in seqs):
                    counts["no_target"] += 1
                    continue
                for s, x in zip(self.streams, seqs):
                    out[s].append(x)
            return out, counts

        self.cache = load_or_build(self.files, self.kind, tokenizer, cache_dir, encode, self.streams,
                                   options={"max_len": max_len, "template": _template_hash(tokenizer)},
                                   on_error=on_error, preparation=preparation)
        self.report: DataReport = self.cache.report
        counters = self.cache.meta["counters"]
        if len(self.cache) == 0:
            raise DataError(self.files[0], 0, "(dataset)",
                            f"no usable {self.kind} record: {self.report.records} read, {self.report.skipped} bad, "
                            f"{counters.get('no_target', 0)} with no assistant token within max_len={max_len}; "
                            "raise max_len or check the file")
        read = max(self.report.records, 1)
        self.truncated_fraction = counters.get("truncated", 0) / read
        self.num_no_target = counters.get("no_target", 0)
        self.num_tokens = int(sum(self.cache.meta["num_tokens"].values()))
        self.lengths = np.max([self.cache.lengths(s) for s in self.streams], axis=0)  # a DPO pair: its longer side

    def _messages(self, record: dict, stream: str) -> list[dict]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.cache)

    def _pair(self, stream: str, i: int):
        ids = self.cache.sequence(stream, i)
        return torch.from_numpy(ids), torch.from_numpy(self.masker.labels(ids))


class SFTDataset(_ChatCache):
    """Conversations rendered with the chat template, truncated to max_len; labels only on assistant replies.

    Items are variable-length `{"input_ids", "labels"}` LongTensors; batch them with `collate_pad` and, for less
    padding, `LengthGroupedBatchSampler(dataset.lengths, ...)`.
    """

    streams, kind = ("ids",), "sft"

    def _messages(self, record, stream):
        return record["conversations"]

    def __getitem__(self, i: int) -> dict:
        ids, labels = self._pair("ids", i)
        return {"input_ids": ids, "labels": labels}


class DPODataset(_ChatCache):
    """Preference pairs; each side masked like SFT. Batch with `collate_dpo` ([chosen; rejected] rows)."""

    streams, kind = ("chosen", "rejected"), "dpo"

    def _messages(self, record, stream):
        return record[stream]

    def __getitem__(self, i: int) -> dict:
        c_ids, c_labels = self._pair("chosen", i)
        r_ids, r_labels = self._pair("rejected", i)
        return {"chosen_ids": c_ids, "chosen_labels": c_labels, "rejected_ids": r_ids, "rejected_labels": r_labels}


class PromptDataset(Dataset):
    """Prompts for RL (PPO/GRPO/SPO) and evaluation, held in memory (prompt files are small).

    Items: `{"messages", "tools", "prompt" (rendered with the generation prompt), "prompt_ids" (left-truncated to
    max_prompt_len, as MiniMind does, so the end of the prompt survives), "answer" (the record's "answer" or None)}`;
    `messages` and `tools` are normalised (`normalize_messages`: lists, not JSON strings; `tools` None if none).
    Records are read as kind "rl": a trailing assistant turn after the last user turn (MiniMind's rlaif placeholder,
    or the reply of an SFT record) is dropped, so SFT files serve as prompt files too.
    """

    def __init__(self, files, tokenizer, max_prompt_len: int, on_error: str = "raise",
                 report: DataReport | None = None, kind: str = "rl"):
        self.files, self.max_prompt_len = _file_list(files), max_prompt_len
        self.report = report if report is not None else DataReport()
        self.items = []
        for f in self.files:
            for rec in read_records(f, kind, on_error, self.report):
                self.items.append(self._item(rec, tokenizer))

    def _item(self, rec, tokenizer) -> dict:
        msgs, tools = normalize_messages(rec["conversations"])
        if msgs[-1]["role"] == "assistant":
            msgs.pop()
        prompt = tokenizer.apply_chat_template(msgs, tools=tools, add_generation_prompt=True)
        ids = list(tokenizer.encode(prompt))[-self.max_prompt_len:]
        return {"messages": msgs, "tools": tools, "prompt": prompt, "prompt_ids": ids, "answer": rec.get("answer"),
                "gt": rec.get("gt")}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]
