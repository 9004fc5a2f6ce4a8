"""Pages of a dataset: byte offsets of every line of a (possibly huge) text file, built in chunks on a worker
thread; or, for Parquet, Arrow and JSON-array files, their rows through core's `TableSource`.

The preview must open a 1 GB JSONL at once: page 1 is read straight from the top of the file with no index,
while `LineIndex.build` scans the file in 4 MiB chunks (numpy finds the newlines) so any later page becomes a
single seek + read. The file is never loaded whole; the index costs 8 bytes a line.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Callable

import numpy as np

CHUNK = 4 * 1024 * 1024  # small enough that each numpy pass holds the GIL only a few ms (UI stays smooth)


class LineIndex:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._starts = np.zeros(1024, dtype=np.int64)  # starts[i] = byte offset of line i (0-based)
        self._count = 1 if self.size else 0
        self._scanned = 0
        self.complete = self.size == 0
        self._lock = threading.Lock()

    # ---- building (worker thread) ----
    def build(self, progress: Callable[..., None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> "LineIndex":
        with open(self.path, "rb") as fh:
            base = 0
            while True:
                if cancelled and cancelled():
                    return self
                buf = fh.read(CHUNK)
                if not buf:
                    break
                ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10).astype(np.int64) + base + 1
                ends = ends[ends < self.size]  # a final newline does not start a new line
                base += len(buf)
                self._append(ends, base)
                if progress:
                    progress(base, self.size, f"{self.line_count:,} lines")
        with self._lock:
            self.complete = True
        return self

    def _append(self, starts: np.ndarray, scanned: int) -> None:
        with self._lock:
            need = self._count + len(starts)
            if need > len(self._starts):
                grown = np.zeros(max(need, 2 * len(self._starts)), dtype=np.int64)
                grown[: self._count] = self._starts[: self._count]
                self._starts = grown
            self._starts[self._count: need] = starts
            self._count = need
            self._scanned = scanned

    # ---- reading (any thread) ----
    @property
    def line_count(self) -> int:
        """Lines known so far (the final count once `complete`)."""
        with self._lock:
            return self._count

    def covers(self, first: int, n: int) -> bool:
        """True when lines [first, first+n) (clipped at the end of the file) can be read by offset now."""
        with self._lock:
            return self.complete or first + n < self._count

    def read_lines(self, first: int, n: int) -> list[str] | None:
        """Lines [first, first+n) as text (without newline), or None when the index has not reached them yet."""
        with self._lock:
            if not (self.complete or first + n < self._count):
                return None
            last = min(first + n, self._count)
            if first >= last:
                return []
            start = int(self._starts[first])
            end = int(self._starts[last]) if last < self._count else self.size
        with open(self.path, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
        lines = data.split(b"\n")[: last - first]
        return [ln.rstrip(b"\r").decode("utf-8", errors="replace") for ln in lines]

    def sample_line_numbers(self, k: int, seed: int = 0) -> list[int]:
        """Up to k distinct line numbers spread over the indexed part of the file (sorted)."""
        count = self.line_count
        if count <= k:
            return list(range(count))
        rng = np.random.default_rng(seed)
        return sorted(int(i) for i in rng.choice(count, size=k, replace=False))

    def read_line(self, i: int) -> str | None:
        got = self.read_lines(i, 1)
        return got[0] if got else None

    def head(self, n: int) -> list[str]:
        """Page 1, read from the top of the file before the index reaches it."""
        return head_lines(self.path, n)


class TableIndex:
    """LineIndex's reading interface over the rows of a table (core.data.sources.TableSource); a row is served as
    its JSON text, so the preview and the stats treat it as a JSONL line. Parquet knows its row count from the
    footer at once; an Arrow folder learns it in `build` (a walk over memory-mapped batches, nothing decoded)."""

    def __init__(self, path: str | Path):
        from core.data.sources import TableSource, source_size

        self.path = Path(path)
        self.size = source_size(self.path)
        self.source = TableSource(self.path)
        self._lock = threading.Lock()  # pyarrow readers are not shared between threads

    @property
    def complete(self) -> bool:
        return self.source.num_rows is not None

    def build(self, progress: Callable[..., None] | None = None,
              cancelled: Callable[[], bool] | None = None) -> "TableIndex":
        with self._lock:
            self.source.scan(cancelled)
        if progress and self.complete:
            progress(self.size, self.size, f"{self.line_count:,} rows")
        return self

    @property
    def line_count(self) -> int:
        return self.source.num_rows or 0

    def covers(self, first: int, n: int) -> bool:
        return self.complete

    def read_lines(self, first: int, n: int) -> list[str] | None:
        if not self.complete:
            return None
        with self._lock:
            rows = self.source.read_rows(first, n)
        return [json.dumps(r, ensure_ascii=False, default=str) for r in rows]

    def head(self, n: int) -> list[str]:
        from core.data.sources import head_rows

        return [json.dumps(r, ensure_ascii=False, default=str) for r in head_rows(self.path, n)]

    def sample_line_numbers(self, k: int, seed: int = 0) -> list[int]:
        return LineIndex.sample_line_numbers(self, k, seed)

    def read_line(self, i: int) -> str | None:
        got = self.read_lines(i, 1)
        return got[0] if got else None


def open_index(path: str | Path):
    """The page index for a dataset: rows of a table, or lines of a text file."""
    from core.data.sources import is_table

    return TableIndex(path) if is_table(path) else LineIndex(path)


def head_lines(path: str | Path, n: int, max_bytes: int = 64 * 1024 * 1024) -> list[str]:
    """The first n lines (rows of a table), read directly (no index): what page 1 shows while the index is being
    built."""
    from core.data.sources import is_table

    if is_table(path):
        return TableIndex(path).head(n)
    out: list[str] = []
    read = 0
    with open(path, "rb") as fh:
        for raw in fh:
            out.append(raw.rstrip(b"\r\n").decode("utf-8", errors="replace"))
            read += len(raw)
            if len(out) >= n or read >= max_bytes:
                break
    return out
