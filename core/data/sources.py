"""Where rows come from: JSONL lines, or the rows of a table file — Parquet, a folder written by
`datasets.save_to_disk` (Arrow), or a JSON array.

Tables are read through pyarrow in record batches (Parquet row groups, Arrow IPC batches, memory-mapped), never
whole: `TableSource.iter_rows` streams them and `read_rows(first, n)` reads one page. A row is a plain dict
(`to_pylist`), numbered from 1 as a JSONL line is, so errors say `file:row: field: message` in every format.
pyarrow is imported on first use: the readers of JSONL (and the studio at start-up) never pay for it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from core.data.errors import DataError

TABLE_SUFFIXES = (".parquet", ".pq")
ARROW_MARKERS = ("state.json", "dataset_info.json")  # what `datasets.save_to_disk` writes beside its .arrow files
PAGE_BATCH_ROWS = 1024  # rows per batch when streaming a big row group
BIG_ROW_GROUP = 64 << 20  # uncompressed bytes: a row group above this is paged batch by batch, never held whole


def is_arrow_dir(path) -> bool:
    """A folder written by `datasets.Dataset.save_to_disk` (one split)."""
    p = Path(path)
    return p.is_dir() and (p / "state.json").is_file() and any(p.glob("*.arrow"))


def is_json_array(path) -> bool:
    """A .json file holding one JSON array of records (LLaMA-Factory's alpaca_data.json style), not JSONL."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    with open(p, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def is_table(path) -> bool:
    """Rows that come from a table (Parquet, Arrow folder, JSON array) rather than JSONL lines."""
    p = Path(path)
    return p.suffix.lower() in TABLE_SUFFIXES and p.is_file() or is_arrow_dir(p) or is_json_array(p)


def is_source(path) -> bool:
    """Something the readers can open: a file, or a save_to_disk folder."""
    return Path(path).is_file() or is_arrow_dir(path)


def check_source(path) -> Path:
    """`path` if the readers can open it, else a DataError that says what is wrong."""
    p = Path(path)
    if p.is_dir():
        if (p / "dataset_dict.json").is_file():
            splits = json.loads((p / "dataset_dict.json").read_text()).get("splits", [])
            raise DataError(p, 0, "(file)", f"a DatasetDict folder with splits {', '.join(splits)}; "
                                            f"open one split folder (e.g. {p / (splits[0] if splits else 'train')})")
        if not is_arrow_dir(p):
            raise DataError(p, 0, "(file)", "a folder that `datasets.save_to_disk` did not write (no state.json "
                                            "and .arrow files); open the data files inside it")
        return p
    if not p.is_file():
        raise DataError(p, 0, "(file)", "no such file")
    return p


def _arrow_files(path: Path) -> list[Path]:
    state = json.loads((path / "state.json").read_text())
    names = [f["filename"] for f in state.get("_data_files", [])]
    return [path / n for n in names] or sorted(path.glob("*.arrow"))


def source_files(path) -> list[Path]:
    """The files that hold a source's data (a save_to_disk folder: its .arrow files in order)."""
    p = Path(path)
    return _arrow_files(p) if p.is_dir() else [p]


def source_size(path) -> int:
    """Bytes on disk of a source's data."""
    return sum(f.stat().st_size for f in source_files(path))


def source_stamp(path) -> list:
    """What changes when a source's data changes: resolved path, size and mtime of each of its files."""
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in source_files(path)]


class TableSource:
    """Rows of a Parquet file, an Arrow folder or a JSON array, read a batch at a time.

    `num_rows` is known on opening for Parquet (its footer) and JSON arrays; for an Arrow folder it is known
    after `scan()`, which walks the memory-mapped IPC batches once (no data is copied).
    """

    def __init__(self, path):
        self.path = check_source(path)
        self.size = source_size(self.path)
        self.kind = ("arrow" if self.path.is_dir() else "json" if is_json_array(self.path) else "parquet")
        self._cached: tuple[int, object] | None = None  # (row group, table) of the last page read
        self._stream_state: list | None = None  # a big row group read batch by batch: [group, batches, row, batch]
        self._batches: list | None = None  # Arrow: every record batch (zero-copy views of the memory map)
        self._starts: list[int] = [0]      # first row of each batch / row group, then the total
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            try:
                self._pf = pq.ParquetFile(self.path, memory_map=True)
            except Exception as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError for a bad file
                raise DataError(self.path, 0, "(parquet)", f"cannot read the file: {exc}") from None
            md = self._pf.metadata
            for i in range(md.num_row_groups):
                self._starts.append(self._starts[-1] + md.row_group(i).num_rows)
        elif self.kind == "json":
            self._rows = _load_json_array(self.path)
            self._starts = [0, len(self._rows)]

    # ---- shape -----------------------------------------------------------------------------------------------
    @property
    def num_rows(self) -> int | None:
        if self.kind == "arrow" and self._batches is None:
            return None
        return self._starts[-1]

    def columns(self) -> list[str]:
        if self.kind == "parquet":
            return list(self._pf.schema_arrow.names)
        if self.kind == "arrow":
            return list(self._stream(source_files(self.path)[0]).schema.names)
        return sorted({k for r in self._rows[:100] if isinstance(r, dict) for k in r})

    def scan(self, cancelled=None) -> "TableSource":
        """Arrow: index the record batches of every file (fast: memory-mapped, nothing decoded)."""
        if self.kind != "arrow" or self._batches is not None:
            return self
        batches, starts = [], [0]
        for f in source_files(self.path):
            for batch in self._stream(f):
                batches.append(batch)
                starts.append(starts[-1] + batch.num_rows)
                if cancelled and cancelled():
                    return self
        self._batches, self._starts = batches, starts
        return self

    @staticmethod
    def _stream(file: Path):
        import pyarrow as pa

        return pa.ipc.open_stream(pa.memory_map(str(file)))

    # ---- reading ---------------------------------------------------------------------------------------------
    def iter_rows(self, start_row: int = 0) -> Iterator[tuple[dict, int]]:
        """Yield (row, 1-based row number) from row `start_row` (0-based) on, one batch in memory at a time."""
        for first, rows in self.iter_batches(start_row):
            for k, row in enumerate(rows):
                yield row, first + k + 1

    def iter_batches(self, start_row: int = 0) -> Iterator[tuple[int, list[dict]]]:
        """Yield (0-based first row, rows) batch by batch from `start_row` on."""
        if self.kind == "json":
            for i in range(start_row, len(self._rows), PAGE_BATCH_ROWS):
                yield i, self._rows[i:i + PAGE_BATCH_ROWS]
            return
        if self.kind == "arrow":
            row = 0
            for f in source_files(self.path):
                for batch in self._stream(f):
                    end = row + batch.num_rows
                    if end > start_row:
                        skip = max(0, start_row - row)
                        yield row + skip, batch.slice(skip).to_pylist()
                    row = end
            return
        for g in range(len(self._starts) - 1):
            if self._starts[g + 1] <= start_row:
                continue
            row = self._starts[g]
            for batch in self._pf.iter_batches(batch_size=PAGE_BATCH_ROWS, row_groups=[g]):
                end = row + batch.num_rows
                if end > start_row:
                    skip = max(0, start_row - row)
                    yield row + skip, batch.slice(skip).to_pylist()
                row = end

    def read_rows(self, first: int, n: int) -> list[dict]:
        """Rows [first, first + n) (0-based, clipped at the end). Parquet: only the row groups that hold them."""
        if self.kind == "json":
            return self._rows[first:first + n]
        if self.kind == "arrow":
            self.scan()
        out: list[dict] = []
        while len(out) < n and first < self._starts[-1]:
            g = _bisect_right(self._starts, first) - 1
            if self.kind == "parquet" and self._pf.metadata.row_group(g).total_byte_size > BIG_ROW_GROUP:
                table, offset = self._streamed(g, first)
            else:
                table, offset = self._piece(g), first - self._starts[g]
            got = table.slice(offset, n - len(out)).to_pylist()
            if not got:
                break
            out += got
            first += len(got)
        return out

    def _streamed(self, g: int, first: int):
        """(batch, offset in it) holding row `first` of a big row group, read batch by batch: only one batch is
        in memory, and paging forward goes on from the batch before instead of from the group's start."""
        state = self._stream_state
        if state is None or state[0] != g or state[2] > first:
            state = [g, self._pf.iter_batches(batch_size=PAGE_BATCH_ROWS, row_groups=[g]), self._starts[g], None]
        while state[3] is None or first >= state[2] + state[3].num_rows:
            if state[3] is not None:
                state[2] += state[3].num_rows
            state[3] = next(state[1])
        self._stream_state = state
        return state[3], first - state[2]

    def _piece(self, g: int):
        """Row group (Parquet) or record batch (Arrow) `g`, the last one read kept for the next page."""
        if self._cached is not None and self._cached[0] == g:
            return self._cached[1]
        piece = self._batches[g] if self.kind == "arrow" else self._pf.read_row_group(g)
        self._cached = (g, piece)
        return piece


def _bisect_right(starts: list[int], value: int) -> int:
    import bisect

    return bisect.bisect_right(starts, value)


def _load_json_array(path: Path) -> list:
    """A JSON array file, whole (such files are small; Parquet and Arrow are the formats for big data)."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        rows = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(path, line, "(encoding)", "not valid UTF-8; re-save the file as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, exc.lineno, "(json)", f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(rows, list):
        raise DataError(path, 1, "(json)", f"a JSON file must hold an array of records, got {type(rows).__name__}")
    return rows


def head_rows(path, n: int) -> list[dict]:
    """The first n rows of a table source (page 1 of the preview)."""
    source = TableSource(path)
    out: list[dict] = []
    for _first, rows in source.iter_batches(0):
        out += rows[: n - len(out)]
        if len(out) >= n:
            break
    return out
