"""Stream training text out of MiniMind's JSONL formats and plain-text files, one record at a time.

Nothing here holds more than one record (or one paragraph of a .txt file) in memory, so corpora of any size
can feed the BPE trainer.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

JSONL_SUFFIXES = {".jsonl"}
TEXT_SUFFIXES = {".txt", ".text", ".md"}
MAX_PARAGRAPH_CHARS = 1 << 16  # a .txt "record" is a paragraph, cut at this size so no line run can grow unbounded


def check_files(files) -> list[Path]:
    """Resolve and validate the input paths; raise a message that says what to pass instead."""
    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError("no training files given; pass .jsonl (pretrain/SFT/DPO/RL) or .txt files")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if path.suffix.lower() not in JSONL_SUFFIXES | TEXT_SUFFIXES:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl or .txt")
    return paths


def count_records(path: Path, limit: int | None = None) -> int:
    """Records `iter_records` will yield from `path` (stops counting at `limit`)."""
    n = 0
    for _ in _record_lines(path):
        n += 1
        if limit is not None and n >= limit:
            break
    return n


def iter_records(path: Path) -> Iterator[str]:
    """The training text of each record of `path`; raises ValueError naming `file:line` on a bad record."""
    if path.suffix.lower() in TEXT_SUFFIXES:
        yield from (text for _, text in _record_lines(path))
        return
    for lineno, line in _record_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
                             f"fix or delete this line") from None
        yield record_text(record, f"{path}:{lineno}")


def record_text(record, where: str) -> str:
    """All text of one JSONL record: pretrain `text`, SFT/RL `conversations` (+ RL `answer`), DPO `chosen`/`rejected`;
    of each message its `content`, `reasoning_content`, `tools` and `tool_calls`."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    parts: list[str] = []
    if "text" in record:
        parts.append(_string(record["text"], f"{where}: text"))
    for key in ("conversations", "chosen", "rejected"):
        if key in record:
            parts.extend(_contents(record[key], f"{where}: {key}"))
    if "answer" in record:
        parts.append(_string(record["answer"], f"{where}: answer"))
    if not parts and not any(k in record for k in ("text", "conversations", "chosen", "rejected", "answer")):
        raise ValueError(f"{where}: no text field; expected 'text', 'conversations', 'chosen'/'rejected' "
                         f"or 'answer', found {sorted(record)}")
    return "\n".join(p for p in parts if p)


def _contents(messages, where: str) -> list[str]:
    if not isinstance(messages, list):
        raise ValueError(f"{where}: expected a list of {{'role', 'content'}} messages, got {type(messages).__name__}")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"{where}[{i}]: expected a {{'role', 'content'}} object, got {type(message).__name__}")
        for key in ("content", "reasoning_content"):
            if message.get(key) is not None:  # None is legal for tool-call-only assistant turns
                out.append(_string(message[key], f"{where}[{i}].{key}"))
        for key in ("tools", "tool_calls"):  # minimind-3: JSON strings or lists; learned as the JSON text
            value = message.get(key)
            if value:
                out.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return out


def _string(value, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _record_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) per record: non-blank lines of JSONL, paragraphs of plain text."""
    with open(path, encoding="utf-8", errors="strict", newline="") as f:
        try:
            if path.suffix.lower() in JSONL_SUFFIXES:
                for lineno, line in enumerate(f, 1):
                    if line.strip():
                        yield lineno, line
                return
            yield from _paragraphs(f)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start} of a read chunk); "
                             f"convert it to UTF-8") from None


def _paragraphs(f) -> Iterator[tuple[int, str]]:
    # Paragraphs keep their inner newlines, so merges like "\n" runs are learned as they appear in documents.
    start, buf, size = 0, [], 0
    for lineno, line in enumerate(f, 1):
        if not line.strip():
            if buf:
                yield start, "".join(buf).rstrip("\n")
                buf, size = [], 0
            continue
        if not buf:
            start = lineno
        buf.append(line)
        size += len(line)
        if size >= MAX_PARAGRAPH_CHARS:
            yield start, "".join(buf)
            buf, size = [], 0
    if buf:
        yield start, "".join(buf).rstrip("\n")
