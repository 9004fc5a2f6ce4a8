"""Read new complete lines from a growing events.jsonl, remembering the byte offset.

The trainer appends one JSON object per line. A line being written may be incomplete when we read, so only
bytes up to the last newline are consumed; the rest is read again next time. The offset is stored in the DB so
a re-opened studio continues exactly where it stopped. Used by the store (importing a run folder) and by the
worker's ingest thread (following a live run).
"""
from __future__ import annotations

from pathlib import Path

from core.event_schema import parse_event_line

MAX_READ = 8 * 1024 * 1024  # bytes per poll: a huge backlog is ingested over several ticks, not in one stall


class EventTailer:
    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.offset = offset

    def read_new(self, max_bytes: int = MAX_READ) -> tuple[list[dict], list[str]]:
        """(events, bad lines) appended since the last call; both empty when nothing new or no file yet."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(0, 2)
                size = fh.tell()
                if size < self.offset:  # the file was replaced or truncated: start again from its beginning
                    self.offset = 0
                if size == self.offset:
                    return [], []
                fh.seek(self.offset)
                chunk = fh.read(min(size - self.offset, max_bytes))
        except FileNotFoundError:
            return [], []
        end = chunk.rfind(b"\n")
        if end < 0:
            return [], []
        self.offset += end + 1
        events, bad = [], []
        for raw in chunk[:end].split(b"\n"):
            if not raw.strip():
                continue
            event = parse_event_line(raw)
            if event is None:
                bad.append(raw.decode("utf-8", "replace"))
            else:
                events.append(event)
        return events, bad

    def read_all(self) -> tuple[list[dict], list[str]]:
        """Everything from the current offset to the end (loops over MAX_READ chunks)."""
        events, bad = [], []
        while True:
            before = self.offset
            new, new_bad = self.read_new()
            if self.offset == before:
                return events, bad
            events.extend(new)
            bad.extend(new_bad)
