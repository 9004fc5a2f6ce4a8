"""Reading and validating dataset files, one record at a time.

Every problem becomes a `DataError` that names the file, the 1-based line and the field, so a person can open the
file at that line and fix it. Lines are read as bytes and decoded here, so a non-UTF-8 line is reported by its line
number instead of aborting the whole read with a UnicodeDecodeError from deep inside `open()`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from core.data.errors import DataError
from core.data.formats import convert_row, probe_rows, resolve_mapping
from core.data.sources import TableSource, check_source, is_table
from core.tokenizer.messages import MessageError, check_messages

# The record kinds: the one list that the method registry (MethodSpec.data_kind), the CLI's `data` commands and the
# studio's Datasets pane derive from. RECORD_KINDS are the JSONL formats a method trains on (docs/data-formats.md);
# "text" is plain paragraphs, read as pretrain records.
RECORD_KINDS = ("pretrain", "sft", "dpo", "rl", "agent")
KINDS = (*RECORD_KINDS, "text")
TOKEN_KINDS = ("pretrain", "text", "sft", "dpo")  # the kinds a token cache can hold (`minimind data prepare`)
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class DataReport:
    """What a skip-mode read found: how many records were kept, how many skipped, and the first errors."""

    max_errors: int = 20
    records: int = 0
    skipped: int = 0
    errors: list = field(default_factory=list)

    def add_error(self, error: DataError) -> None:
        self.skipped += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(error)

    @property
    def ok(self) -> bool:
        return self.skipped == 0

    def summary(self) -> str:
        text = f"{self.records} records read, {self.skipped} skipped"
        if self.skipped > len(self.errors):
            text += f" (first {len(self.errors)} problems listed)"
        return text

    def to_dict(self) -> dict:
        return {"records": self.records, "skipped": self.skipped, "errors": [str(e) for e in self.errors]}


# --- validation -------------------------------------------------------------------------------------------------

def _check_messages(msgs, name: str, fail) -> None:
    """Validate a list of {"role", "content"} messages, with minimind-3's tools, tool calls, tool responses and
    reasoning (core.tokenizer.messages.check_messages); `fail(field, message)` raises."""
    if not isinstance(msgs, list):
        fail(name, f"must be a list of messages, got {type(msgs).__name__}")
    if not msgs:
        fail(name, "is empty; it needs at least one message")
    for i, m in enumerate(msgs):
        where = f"{name}[{i}]"
        if not isinstance(m, dict):
            fail(where, f'must be an object {{"role": ..., "content": ...}}, got {type(m).__name__}')
        if "role" not in m:
            fail(f"{where}.role", "missing")
        role = m["role"]
        if role not in ROLES:
            fail(f"{where}.role", f"unknown role {role!r}; use one of {', '.join(ROLES)}")
        if role == "system" and i != 0:
            fail(f"{where}.role", "a system message may only come first")
        if "content" not in m:
            fail(f"{where}.content", "missing")
        # OpenAI-style tool-call turns may have "content": null
        if not isinstance(m["content"], str) and not (m["content"] is None and m.get("tool_calls")):
            fail(f"{where}.content", f"must be a string, got {type(m['content']).__name__}")
    try:
        check_messages(msgs, name)
    except MessageError as exc:
        fail(exc.field, exc.message)


def _roles(msgs) -> list[str]:
    return [m["role"] for m in msgs]


def _check_text(rec, fail) -> None:
    if "text" not in rec:
        fail("text", 'missing; a pretrain record is {"text": "..."}')
    if not isinstance(rec["text"], str):
        fail("text", f"must be a string, got {type(rec['text']).__name__}")
    if not rec["text"].strip():
        fail("text", "is empty")


def _check_sft(rec, fail) -> None:
    if "conversations" not in rec:
        fail("conversations", 'missing; an SFT record is {"conversations": [{"role": ..., "content": ...}, ...]}')
    msgs = rec["conversations"]
    _check_messages(msgs, "conversations", fail)
    roles = _roles(msgs)
    if "user" not in roles:
        fail("conversations", "has no user turn")
    if "assistant" not in roles:
        fail("conversations", "has no assistant turn (nothing to learn from)")


def _check_dpo(rec, fail) -> None:
    for side in ("chosen", "rejected"):
        if side not in rec:
            fail(side, 'missing; a DPO record is {"chosen": [messages], "rejected": [messages]}')
        msgs = rec[side]
        _check_messages(msgs, side, fail)
        if "user" not in _roles(msgs):
            fail(side, "has no user turn")
        if msgs[-1]["role"] != "assistant":
            fail(f"{side}[{len(msgs) - 1}].role", "the last message must be the assistant's answer")


def _check_rl(rec, fail) -> None:
    if "conversations" not in rec:
        fail("conversations", 'missing; an RL record is {"conversations": [{"role": "user", ...}], "answer": "..."}')
    msgs = rec["conversations"]
    _check_messages(msgs, "conversations", fail)
    roles = _roles(msgs)
    # MiniMind's rlaif files end with a placeholder assistant turn after the prompt; accept it. A prompt may
    # also end with tool responses (the model continues after a tool call).
    if roles[-1] not in ("user", "tool") and not (len(roles) >= 2 and roles[-1] == "assistant"
                                                   and roles[-2] in ("user", "tool")):
        fail(f"conversations[{len(msgs) - 1}].role", "the prompt must end with a user turn")
    answer = rec.get("answer")
    if answer is not None and not isinstance(answer, str):
        fail("answer", f"must be a string or absent, got {type(answer).__name__}")


def _check_agent(rec, fail) -> None:
    """An agent task (MiniMind v3 agent_rl.jsonl): an RL prompt whose system message declares `tools`, plus `gt`,
    the values the final answer must contain."""
    _check_rl(rec, fail)
    msgs = rec["conversations"]
    if not (msgs[0].get("role") == "system" and msgs[0].get("tools")):
        fail("conversations[0].tools", "missing; an agent task declares its tools on a first, system message")
    gt = rec.get("gt")
    if not isinstance(gt, list) or not gt:
        fail("gt", 'missing or empty; list the values the final answer must contain, e.g. "gt": [9472]')
    for i, value in enumerate(gt):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            fail(f"gt[{i}]", f"must be a number or a string, got {type(value).__name__}")


_CHECKS = {"pretrain": _check_text, "sft": _check_sft, "dpo": _check_dpo, "rl": _check_rl, "agent": _check_agent}


def validate_record(rec, kind: str, file, line: int) -> None:
    """Raise DataError if `rec` (a parsed JSON value) is not a valid record of `kind`."""

    def fail(field_name, message):
        raise DataError(file, line, field_name, message)

    if not isinstance(rec, dict):
        fail("(record)", f"must be a JSON object, got {type(rec).__name__}")
    _CHECKS[kind](rec, fail)


# --- reading ----------------------------------------------------------------------------------------------------

def iter_records(path, kind: str, on_error: str = "raise", report: DataReport | None = None, mapping=None
                 ) -> Iterator[tuple[dict, int, int]]:
    """Yield (record, line, bytes_read_so_far); the building block of read_records and the token cache."""
    for rec, line, pos, _lines in iter_records_at(path, kind, on_error, report, mapping=mapping):
        yield rec, line, pos


def iter_records_at(path, kind: str, on_error: str = "raise", report: DataReport | None = None,
                    start: tuple[int, int] = (0, 0), mapping=None) -> Iterator[tuple[dict, int, int, int]]:
    """Yield (record, line, bytes_read_so_far, lines_read_so_far), reading from `start` = (byte offset, lines
    before it): a position an earlier call yielded, so that an interrupted pass goes on where it was (the token
    cache resumes a build this way). Line numbers in errors stay those of the whole file.

    Tables (Parquet, a save_to_disk folder, a JSON array) are read a batch at a time; their "line" is the 1-based
    row, their byte position an estimate (the share of rows read times the size) and `start` resumes by rows.
    Rows become MiniMind records through `mapping` (default: `core.data.formats.resolve_mapping(path)`), and an
    error names the field of the row, before conversion."""
    path = Path(path)
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    check_source(path)
    report = report if report is not None else DataReport()

    def handle(err: DataError) -> None:
        if on_error == "raise":
            raise err
        report.add_error(err)

    if kind == "text":
        for item in _iter_paragraphs(path, kind, handle, *start):
            report.records += 1
            yield item
        return
    mapping = mapping or resolve_mapping(path)
    rows = _iter_table(path, *start) if is_table(path) else _iter_jsonl(path, handle, *start)
    for row, number, pos, count in rows:
        try:
            rec, origins = convert_row(mapping, row, path, number)
            try:
                validate_record(rec, kind, path, number)
            except DataError as err:
                raise DataError(path, number, origins.source(err.field), err.message) from None
        except DataError as err:
            handle(err)
            continue
        report.records += 1
        yield rec, number, pos, count


def read_records(path, kind: str | None = None, on_error: str = "raise", report: DataReport | None = None
                 ) -> Iterator[dict]:
    """Stream validated records of `kind` from a JSONL file (or paragraphs of a .txt file for kind "text").

    kind=None detects it (`detect_kind`). on_error="raise" raises the first DataError; "skip" skips bad records
    and counts each in `report` (records kept, records skipped, the first `report.max_errors` errors).
    """
    kind = kind or detect_kind(path)
    for rec, _line, _pos in iter_records(path, kind, on_error, report):
        yield rec


def _decode(raw: bytes, path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, lineno, "(encoding)",
                        f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                        "re-save the file as UTF-8") from None


def _iter_jsonl(path: Path, handle, pos: int = 0, lines: int = 0):
    """Parsed JSON lines: (value, line, bytes read, lines read); a line that is not JSON goes to `handle`."""
    with open(path, "rb") as f:
        f.seek(pos)
        for lineno, raw in enumerate(f, lines + 1):
            pos += len(raw)
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # tolerate a UTF-8 byte-order mark
                raw = raw[3:]
            if not raw.strip():
                continue  # a blank line is not a record
            try:
                text = _decode(raw, path, lineno)
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(path, lineno, "(json)", f"invalid JSON: {exc.msg} at column {exc.colno}") from None
            except DataError as err:
                handle(err)
                continue
            yield row, lineno, pos, lineno


def _iter_table(path: Path, pos: int = 0, rows_before: int = 0):
    """Rows of a table source: (row, row number, estimated bytes read, rows read)."""
    source = TableSource(path).scan()
    total, size = max(1, source.num_rows or 0), source.size
    for row, number in source.iter_rows(rows_before):
        yield row, number, size * number // total, number


def _iter_paragraphs(path: Path, kind: str, handle, pos: int = 0, lines_before: int = 0):
    """Plain text: paragraphs separated by blank lines are documents; the line is where a paragraph starts."""
    start, lines, lineno = 0, [], lines_before
    with open(path, "rb") as f:
        f.seek(pos)
        for lineno, raw in enumerate(f, lines_before + 1):
            pos += len(raw)
            try:
                text = _decode(raw, path, lineno)
            except DataError as err:
                handle(err)
                continue
            if text.strip():
                if not lines:
                    start = lineno
                lines.append(text.rstrip("\r\n"))
            elif lines:
                yield {"text": "\n".join(lines)}, start, pos, lineno
                lines = []
    if lines:
        yield {"text": "\n".join(lines)}, start, pos, lineno


def detect_kind(path, probe: int = 20, mapping=None) -> str:
    """Guess a file's kind: .txt is "text"; otherwise the keys of its first valid rows, after the file's
    mapping (core.data.formats) turned them into MiniMind records, decide."""
    path = check_source(path)
    if path.suffix.lower() in (".txt", ".md"):
        return "text"
    mapping = mapping or resolve_mapping(path)
    if mapping.format == "preference":
        return "dpo"
    votes: dict[str, int] = {}
    for row in probe_rows(path, probe):
        try:
            rec, _ = mapping.apply(row, _raise)
        except DataError:
            continue
        kind = _guess(rec) if isinstance(rec, dict) else None
        if kind:
            votes[kind] = votes.get(kind, 0) + 1
    if not votes:
        raise DataError(path, 1, "(kind)",
                        "cannot tell the kind: no record with a text, conversations or chosen/rejected field; "
                        "pass the kind explicitly, or map the file's columns (docs/data-formats.md#mapping)")
    return max(votes, key=votes.get)


def _raise(name, message):
    raise DataError("", 0, name, message)


def _guess(rec: dict) -> str | None:
    if "chosen" in rec and "rejected" in rec:
        return "dpo"
    if "text" in rec:
        return "pretrain"
    msgs = rec.get("conversations")
    if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict):
        if "gt" in rec:
            return "agent"
        if "answer" in rec or msgs[-1].get("role") in ("user", "tool"):
            return "rl"
        return "sft"
    return None
