"""Logic of the Datasets pane: files, kind detection, paged preview, validation, stats, tokenizer training.

Everything slow runs in a `studio.threads.Task`; the presenter only holds state and emits signals, so tests
drive it without a window. Record checks, kind detection and tokenizer training are core's (`core.data`,
`core.tokenizer`); this file only schedules them and turns their results into something to show.
"""
from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from core.data.formats import resolve_mapping
from core.data.sources import is_arrow_dir, is_source
from studio.panes.datasets.index import LineIndex, TableIndex, head_lines, open_index
from studio.threads import Task
from studio.widgets.records_html import page_html, raw_line_html, record_html

DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".txt", ".md")
FILE_FILTER = ("Datasets (*.jsonl *.json *.parquet *.txt *.md);;"
               "Arrow datasets from datasets.save_to_disk (state.json *.arrow);;All files (*)")
PAGE_SIZE = 20


def _dataset_path(p: Path) -> Path:
    """An .arrow file or the state.json of a save_to_disk folder stands for the folder: the dataset is the folder."""
    if p.is_file() and (p.suffix == ".arrow" or p.name == "state.json") and is_arrow_dir(p.parent):
        return p.parent
    return p


def _is_data_file(f: Path) -> bool:
    return f.is_file() and f.suffix.lower() in DATA_SUFFIXES and not f.name.endswith(".mapping.json")


def collect_files(paths) -> list[Path]:
    """Datasets as given, plus those found (recursively) inside folders: data files, and folders written by
    `datasets.save_to_disk` (one entry each, not their .arrow files); sorted, no duplicates."""
    found: list[Path] = []
    for p in map(lambda x: _dataset_path(Path(x)), paths):
        if is_arrow_dir(p):
            found.append(p)
        elif p.is_dir():
            arrow = sorted(d for d in p.rglob("state.json") if is_arrow_dir(d.parent))
            inside = {d.parent for d in arrow}
            found += [d.parent for d in arrow]
            found += sorted(f for f in p.rglob("*") if _is_data_file(f) and not inside & set(f.parents))
        elif p.is_file():
            found.append(p)
    seen, out = set(), []
    for f in found:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            out.append(f)
    return out


def record_text(rec: dict, kind: str, tokenizer=None) -> str:
    """The text a record contributes to training: pretrain text, or the conversation through the chat template."""
    if kind in ("pretrain", "text"):
        return str(rec.get("text", ""))
    msgs = rec.get("chosen") if kind == "dpo" else rec.get("conversations")
    if tokenizer is not None and isinstance(msgs, list):
        try:
            return tokenizer.apply_chat_template(msgs, add_generation_prompt=(kind == "rl"))
        except Exception:  # a malformed record still gets a length (validation reports the problem)
            pass
    return "\n".join(str(m.get("content", "")) for m in msgs or [] if isinstance(m, dict))


class DatasetsPresenter(QObject):
    filesChanged = Signal(list)               # [str]
    fileOpened = Signal(str, str)             # path, kind ("" when unknown)
    pageReady = Signal(int, str)              # page number (0-based), html
    pagePending = Signal(int)                 # the page waits for the index to reach it
    indexProgress = Signal(object, object, str)     # bytes done, total, text
    indexFinished = Signal(int)               # lines
    validationProgress = Signal(object, object, str)
    validationFinished = Signal(object)        # {"records", "skipped", "errors": ["file:line: field: message"]}
    statsFinished = Signal(object)
    tokenizerProgress = Signal(object, object, str)
    tokenizerFinished = Signal(str)           # saved directory
    mappingLoaded = Signal(object)            # {"mapping": {format, columns, tags}, "origin": str, "columns": [str]}
    mappingPreviewed = Signal(object)         # str, html: the rendered template, learned tokens marked
    mappingSaved = Signal(str)                # the sidecar's path
    failed = Signal(str)                      # a message for people

    def __init__(self, context, parent: QObject | None = None, page_size: int = PAGE_SIZE):
        super().__init__(parent)
        self.context = context
        self.page_size = page_size
        self.files: list[Path] = []
        self.path: Path | None = None
        self.kind = ""
        self.mapping = None  # how rows become records (core.data.formats), known with the kind
        self.index: LineIndex | TableIndex | None = None
        self.page = 0
        self._pending_page: int | None = None
        self._tasks: dict[str, Task] = {}

    # ---- files -----------------------------------------------------------------------------------
    def add_paths(self, paths, remember: bool = True) -> list[Path]:
        for f in collect_files(paths):
            if f not in self.files:
                self.files.append(f)
                if remember:
                    self._remember(f)
        self.filesChanged.emit([str(f) for f in self.files])
        return self.files

    def restore(self) -> list[Path]:
        """Reopen the datasets recorded in the run store (the list survives a restart)."""
        try:
            known = [Path(d.path) for d in reversed(self.context.store.datasets()) if is_source(d.path)]
        except Exception:  # a store problem must not keep the pane from opening
            return self.files
        return self.add_paths(known, remember=False) if known else self.files

    def _remember(self, path: Path, **fields) -> None:
        try:
            self.context.store.add_dataset(str(path), name=path.name, **fields)
        except Exception:  # a store problem must not keep the file from opening
            pass

    def detect_kind(self, path) -> str:
        import core.data.records as records  # core.data imports torch: call it from a worker thread

        return records.detect_kind(path)

    def open(self, path) -> None:
        """Show page 1 at once; detect the kind and index the file's lines in the background."""
        self.close_file()
        self.path = Path(path)
        self.kind = ""
        self.mapping = None
        self.index = open_index(self.path)
        self.page = 0
        self.pageReady.emit(0, self._render(self.index.head(self.page_size), 0))
        # detect_kind imports core.data (and with it torch, seconds on a first call): keep it off the UI thread
        kind_task = Task(lambda progress, cancelled, path=self.path: (self.detect_kind(path), resolve_mapping(path)),
                         parent=self)
        kind_task.succeeded.connect(self._on_kind)
        kind_task.failed.connect(lambda msg: (self.fileOpened.emit(str(self.path), ""), self.failed.emit(msg)))
        self._tasks["kind"] = kind_task.start()
        task = Task(self.index.build, parent=self)
        task.progress.connect(self._on_index_progress)
        task.succeeded.connect(self._on_indexed)
        task.failed.connect(self.failed)
        self._tasks["index"] = task.start()

    def _on_kind(self, found) -> None:
        kind, self.mapping = found
        self.kind = kind
        self._remember(self.path, kind=kind)
        self.fileOpened.emit(str(self.path), kind)
        if self.page == 0 and (kind == "text" or not self.mapping.native):
            # re-render page 1 now that the kind and the mapping are known: as plain text, or as records
            self.pageReady.emit(0, self._render(self.index.head(self.page_size), 0))

    def _on_indexed(self, index: LineIndex) -> None:
        if index is self.index and index.complete:
            self.indexFinished.emit(index.line_count)
            self._serve_pending()

    def close_file(self) -> None:
        for name in ("kind", "index", "validate", "stats", "mapping", "preview"):
            task = self._tasks.pop(name, None)
            if task is not None:
                task.cancel_and_wait()
        self.index = None
        self._pending_page = None

    def shutdown(self) -> None:
        """Stop every background task (the pane calls this when it closes)."""
        self.close_file()
        for task in self._tasks.values():
            task.cancel_and_wait()

    # ---- paging ----------------------------------------------------------------------------------
    @property
    def page_count(self) -> int | None:
        """Known once indexing finished; None before."""
        if self.index is None or not self.index.complete:
            return None
        return max(1, -(-self.index.line_count // self.page_size))

    def show_page(self, page: int) -> bool:
        """Render `page` now if the index reaches it (True), else remember it and render when it does."""
        if self.index is None:
            return False
        page = max(0, page if self.page_count is None else min(page, self.page_count - 1))
        self.page = page
        first = page * self.page_size
        lines = self.index.read_lines(first, self.page_size)
        if lines is None:
            self._pending_page = page
            self.pagePending.emit(page)
            return False
        self._pending_page = None
        self.pageReady.emit(page, self._render(lines, first))
        return True

    def _on_index_progress(self, done: int, total: int, text: str) -> None:
        self.indexProgress.emit(done, total, text)
        self._serve_pending()

    def _serve_pending(self) -> None:
        if self._pending_page is not None and self.index is not None:
            if self.index.covers(self._pending_page * self.page_size, self.page_size):
                self.show_page(self._pending_page)

    def _render(self, lines: list[str], first: int) -> str:
        items = []
        for offset, line in enumerate(lines):
            line_no = first + offset + 1
            if not line.strip():
                continue
            if self.kind == "text" or (self.path and self.path.suffix.lower() in (".txt", ".md")):
                items.append((line_no, record_html({"text": line}, line_no)))
                continue
            try:
                row = json.loads(line)
                if self.mapping is not None and not self.mapping.native:
                    row = self.mapping.apply(row, _reject)[0]
                items.append((line_no, record_html(row, line_no)))
            except json.JSONDecodeError as exc:
                items.append((line_no, raw_line_html(line, f"invalid JSON: {exc.msg} at column {exc.colno}",
                                                     line_no)))
            except ValueError as exc:  # the mapping cannot read this row
                items.append((line_no, raw_line_html(line, str(exc), line_no)))
        return page_html(items) or "<p style='color:#6b7280'>(no records on this page)</p>"

    # ---- validation ------------------------------------------------------------------------------
    def validate(self, kind: str | None = None, max_errors: int = 200) -> Task | None:
        if self.path is None:
            self.failed.emit("open a file first")
            return None
        kind = kind or self.kind
        if not kind:
            self.failed.emit(f"{self.path}: choose the dataset kind first (it could not be detected)")
            return None
        task = Task(validate_file, self.path, kind, max_errors, parent=self)
        task.progress.connect(self.validationProgress)
        task.succeeded.connect(self.validationFinished)
        task.failed.connect(self.failed)
        self._tasks["validate"] = task.start()
        return task

    # ---- mapping ---------------------------------------------------------------------------------
    def load_mapping(self) -> Task | None:
        """The open file's mapping (recorded sidecar or detected) and its columns, off the UI thread."""
        if self.path is None:
            return None
        task = Task(lambda progress, cancelled, path=self.path: current_mapping(path), parent=self)
        task.succeeded.connect(self.mappingLoaded)
        task.failed.connect(self.failed)
        self._tasks["mapping"] = task.start()
        return task

    def save_mapping(self, data: dict) -> Path | None:
        """Write `data` as the open file's `<file>.mapping.json`; the kind is detected again with it."""
        from core.data.formats import Mapping, MappingError, save_mapping

        if self.path is None:
            self.failed.emit("open a file first")
            return None
        try:
            out = save_mapping(self.path, Mapping.from_dict(data))
        except (MappingError, OSError) as exc:
            self.failed.emit(f"{self.path.name}.mapping.json: {exc}")
            return None
        self.mappingSaved.emit(str(out))
        self.open(self.path)  # detect the kind again, now through the saved mapping
        return out

    def preview_mapping(self, data: dict, row: int, tokenizer_dir) -> Task | None:
        """Row `row` (0-based) read through `data`, rendered with the chat template and its loss mask."""
        if self.path is None or self.index is None:
            self.failed.emit("open a file first")
            return None
        line = self.index.read_line(row) if self.index.covers(row, 1) else None
        task = Task(lambda progress, cancelled: mapping_preview_html(self.path, row, line, data, tokenizer_dir),
                    parent=self)
        task.succeeded.connect(self.mappingPreviewed)
        task.failed.connect(self.failed)
        self._tasks["preview"] = task.start()
        return task

    # ---- stats -----------------------------------------------------------------------------------
    def compute_stats(self, tokenizer_dir: str | Path, sample: int = 2000) -> Task | None:
        if self.path is None:
            self.failed.emit("open a file first")
            return None
        task = Task(dataset_stats, self.path, self.kind, tokenizer_dir, self.index, sample, parent=self)
        task.succeeded.connect(self.statsFinished)
        task.failed.connect(self.failed)
        self._tasks["stats"] = task.start()
        return task

    # ---- tokenizer -------------------------------------------------------------------------------
    def tokenizer_dirs(self) -> list[Path]:
        """Trained tokenizers in the workspace (each a folder holding tokenizer.json)."""
        return sorted(p.parent for p in self.context.workspace.tokenizers_dir.glob("*/tokenizer.json"))

    def train_tokenizer(self, name: str, vocab_size: int, files=None) -> Task | None:
        from core.tokenizer import train_tokenizer

        files = [str(f) for f in (files or self.files)]
        if not files:
            self.failed.emit("add at least one dataset file to train a tokenizer on")
            return None
        from core.safety import UnsafePathError, contained_path

        try:  # the name is typed by the user: it must not lead the write out of the workspace
            out_dir = contained_path(self.context.workspace.tokenizers_dir, name)
        except UnsafePathError as exc:
            self.failed.emit(f"tokenizer name {exc}")
            return None

        def run(progress, cancelled):
            train_tokenizer(files, vocab_size=vocab_size, out_dir=out_dir,
                            progress=lambda done, total=0: progress(done, total, "reading records"))
            return str(out_dir)

        task = Task(run, parent=self)
        task.progress.connect(self.tokenizerProgress)
        task.succeeded.connect(self._tokenizer_done)
        task.failed.connect(self.failed)
        self._tasks["tokenizer"] = task.start()
        return task

    def _tokenizer_done(self, out_dir: str) -> None:
        self.tokenizerFinished.emit(out_dir)
        self.context.datasetsChanged.emit()


def validate_file(path: Path, kind: str, max_errors: int, progress, cancelled) -> dict:
    """Run core.data's validating reader over the whole file in skip mode (worker thread)."""
    from core.data.records import DataReport, iter_records

    report = DataReport(max_errors=max_errors)
    size = max(1, Path(path).stat().st_size)
    for n, (_rec, _line, pos) in enumerate(iter_records(path, kind, on_error="skip", report=report)):
        if n % 2000 == 0:
            progress(pos, size, f"{report.records:,} records")
            if cancelled():
                break
    progress(size, size, report.summary())
    result = report.to_dict()
    result["summary"] = report.summary()
    return result


def dataset_stats(path: Path, kind: str, tokenizer_dir, index: LineIndex | None, sample: int,
                  progress, cancelled) -> dict:
    """Token lengths of a sample of records (all records when the file is small), chars per token."""
    from core.tokenizer import MiniMindTokenizer

    tok = MiniMindTokenizer.load(tokenizer_dir)
    if not kind:  # asked before the background detection answered
        from core.data.records import detect_kind
        kind = detect_kind(path)
    if kind == "text":
        from core.data.records import read_records
        recs = list(islice(read_records(path, "text", on_error="skip"), sample))
        sampled, total_lines = len(recs), None
    else:
        if index is not None and index.complete:
            lines = [index.read_line(i) for i in index.sample_line_numbers(sample)]
            total_lines = index.line_count
        else:
            lines, total_lines = head_lines(path, sample), None
        mapping, recs = resolve_mapping(path), []
        for line in lines:
            try:
                recs.append(mapping.apply(json.loads(line), _reject)[0])
            except (json.JSONDecodeError, TypeError, ValueError):
                continue
        sampled = len(recs)
    lengths, chars = [], 0
    for i, rec in enumerate(recs):
        text = record_text(rec, kind, tok) if isinstance(rec, dict) else ""
        lengths.append(len(tok.encode(text)))
        chars += len(text)
        if i % 200 == 0:
            progress(i, len(recs), "tokenizing")
            if cancelled():
                break
    arr = np.asarray(lengths, dtype=np.int64)
    return {
        "lines": total_lines, "sampled": sampled, "tokenizer": str(tokenizer_dir),
        "lengths": arr, "tokens": int(arr.sum()), "chars": chars,
        "chars_per_token": chars / max(1, int(arr.sum())),
        "mean": float(arr.mean()) if len(arr) else 0.0,
        "p50": float(np.percentile(arr, 50)) if len(arr) else 0.0,
        "p95": float(np.percentile(arr, 95)) if len(arr) else 0.0,
        "max": int(arr.max()) if len(arr) else 0,
    }


def _reject(name, message):
    raise ValueError(f"{name}: {message}")


def current_mapping(path: Path) -> dict:
    """What the Mapping tab shows: the file's mapping, where it comes from, and the file's columns."""
    from core.data.formats import probe_rows, resolve_mapping

    mapping = resolve_mapping(path)
    rows = probe_rows(path, 20)
    columns = sorted({k for r in rows if isinstance(r, dict) for k in r})
    return {"mapping": mapping.to_dict(), "origin": mapping.origin, "columns": columns}


def mapping_preview_html(path: Path, row: int, line: str | None, data: dict, tokenizer_dir) -> str:
    """Row `row` of `path` through the mapping `data`: the MiniMind record's sides rendered with the tokenizer's
    chat template, the learned (assistant) tokens marked, or the error that row gives, as file:row: field."""
    import html

    from core.data.datasets import masked_segments
    from core.data.errors import DataError
    from core.data.formats import Mapping, MappingError, convert_row
    from core.data.records import validate_record
    from core.tokenizer import MiniMindTokenizer

    def problem(text: str) -> str:
        return f"<p style='color:#b91c1c'>{html.escape(text)}</p>"

    if line is None:
        return problem(f"row {row + 1} is not indexed yet, or past the end of the file")
    try:
        mapping = Mapping.from_dict(data)
    except MappingError as exc:
        return problem(f"mapping: {exc}")
    try:
        rec, origins = convert_row(mapping, json.loads(line), path, row + 1)
        kind = "dpo" if "chosen" in rec else "sft"
        try:
            validate_record(rec, kind, path, row + 1)
        except DataError as err:
            raise DataError(path, row + 1, origins.source(err.field), err.message) from None
    except json.JSONDecodeError as exc:
        return problem(f"{path.name}:{row + 1}: (json): {exc.msg}")
    except DataError as err:
        return problem(str(err))
    if not tokenizer_dir:
        return problem("choose a tokenizer (Stats tab) to render the chat template")
    tok = MiniMindTokenizer.load(tokenizer_dir)
    parts = [f"<p style='color:#6b7280'>row {row + 1} · {mapping.format} → {kind} · "
             "<span style='background:#bbf7d0'>learned</span> · <span style='color:#9ca3af'>no loss</span></p>"]
    for side in (("chosen", "rejected") if kind == "dpo" else ("conversations",)):
        spans = "".join(f"<span style='background:#bbf7d0'>{html.escape(text)}</span>" if learned else
                        f"<span style='color:#6b7280'>{html.escape(text)}</span>"
                        for text, learned in masked_segments(rec[side], tok))
        title = f"<b>{side}</b>" if kind == "dpo" else ""
        parts.append(f"{title}<pre style='white-space:pre-wrap'>{spans}</pre>")
    return "".join(parts)
