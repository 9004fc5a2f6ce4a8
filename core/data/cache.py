"""The token cache: a dataset is tokenized once into memory-mapped arrays and re-used by every later run.

A cache entry is a directory `cache_dir/<kind>-<key>/` holding, per stream (e.g. "tokens", or "chosen" and
"rejected"), `<stream>.bin` (token ids, uint16 when the vocabulary fits, else uint32) and `<stream>.idx` (int64
offsets, one more than there are sequences), plus `meta.json`, written last. The key is the sha256 of the files'
absolute paths, sizes and mtimes, the kind, the tokenizer's hash and the options that change the tokens, so
editing a file or retraining the tokenizer builds a new entry; an entry is built in a temporary directory and
renamed into place, so a crash never leaves a half-written cache that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from core.data.records import DataError, DataReport, iter_records

CACHE_VERSION = 1
BATCH_RECORDS = 512  # records per encode_batch call: big enough for tokenizers' Rust loop, small enough for memory


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of many texts, no specials added, through the tokenizer's Rust `encode_batch` when it has one."""
    if hasattr(tokenizer, "encode_batch"):
        return tokenizer.encode_batch(texts)
    return [list(tokenizer.encode(t)) for t in texts]


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def cache_key(files: list[Path], kind: str, tokenizer, options: dict) -> str:
    stats = []
    for f in files:
        st = f.stat()
        stats.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"v": CACHE_VERSION, "files": stats, "kind": kind, "tokenizer": tokenizer.hash,
                       "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class TokenCache:
    """A read-only view of one cache entry; arrays are memory-mapped, so opening costs no time or RAM."""

    def __init__(self, path: Path, reused: bool):
        self.path, self.reused = Path(path), reused
        self._open()

    # Pickle the location, not the arrays: a DataLoader worker started by spawn (macOS, Windows) re-opens the
    # memory maps instead of receiving a copy of every token.
    def __getstate__(self) -> dict:
        return {"path": self.path, "reused": self.reused}

    def __setstate__(self, state: dict) -> None:
        self.path, self.reused = state["path"], state["reused"]
        self._open()

    def _open(self) -> None:
        self.meta = json.loads((self.path / "meta.json").read_text())
        self._tokens, self._offsets = {}, {}
        for name in self.meta["streams"]:
            self._offsets[name] = np.fromfile(self.path / f"{name}.idx", dtype=np.int64)
            size = int(self._offsets[name][-1])
            dtype = np.dtype(self.meta["dtype"])
            self._tokens[name] = (np.memmap(self.path / f"{name}.bin", dtype=dtype, mode="r", shape=(size,))
                                  if size else np.zeros(0, dtype=dtype))

    def tokens(self, name: str) -> np.ndarray:
        return self._tokens[name]

    def offsets(self, name: str) -> np.ndarray:
        return self._offsets[name]

    def lengths(self, name: str) -> np.ndarray:
        return np.diff(self._offsets[name])

    def sequence(self, name: str, i: int) -> np.ndarray:
        off = self._offsets[name]
        return np.asarray(self._tokens[name][off[i]:off[i + 1]], dtype=np.int64)

    def __len__(self) -> int:
        return len(next(iter(self._offsets.values()))) - 1

    @property
    def report(self) -> DataReport:
        r = self.meta["report"]
        report = DataReport(records=r["records"], skipped=r["skipped"])
        report.errors = [DataError(*e) for e in r["errors"]]
        return report


class _StreamWriter:
    def __init__(self, path: Path, name: str, dtype):
        self.bin = open(path / f"{name}.bin", "wb")
        self.idx_path, self.dtype, self.offsets = path / f"{name}.idx", dtype, [0]

    def add(self, ids) -> None:
        arr = np.asarray(ids, dtype=self.dtype)
        self.bin.write(arr.tobytes())
        self.offsets.append(self.offsets[-1] + len(arr))

    def close(self) -> None:
        self.bin.close()
        np.asarray(self.offsets, dtype=np.int64).tofile(self.idx_path)


class _Progress:
    """Calls progress(done_bytes, total_bytes) and prints a line to stderr at most every 2 seconds."""

    def __init__(self, label: str, total: int, callback: Callable | None):
        self.label, self.total, self.callback = label, total, callback
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        if self.callback:
            self.callback(done, self.total)
        now = time.monotonic()
        if now - self.last >= 2.0:
            self.last = now
            pct = 100.0 * done / max(self.total, 1)
            print(f"tokenizing {self.label}: {pct:5.1f}% ({done / 1e6:.1f} / {self.total / 1e6:.1f} MB)",
                  file=sys.stderr, flush=True)


def load_or_build(files, kind: str, tokenizer, cache_dir, encode: Callable, streams: tuple[str, ...],
                  options: dict | None = None, on_error: str = "raise", progress: Callable | None = None
                  ) -> TokenCache:
    """Open the cache entry for these files, building it first if needed.

    `encode(records) -> (dict stream -> list of id lists, dict of counters)` turns a batch of validated records into
    token sequences; a record may give no sequence (e.g. nothing left to learn from after truncation) as long as it
    says so in a counter, which ends up in meta.json.
    """
    files = [Path(f) for f in files]
    options = dict(options or {}, on_error=on_error)
    key = cache_key(files, kind, tokenizer, options)
    final = Path(cache_dir) / f"{kind}-{key[:24]}"
    if (final / "meta.json").is_file():
        return TokenCache(final, reused=True)

    # Unique per build, so ranks or studio jobs building the same entry at once never share a scratch directory.
    tmp = Path(cache_dir) / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        meta = _build(files, kind, tokenizer, tmp, encode, streams, options, on_error, progress)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same entry first; theirs is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenCache(final, reused=False)


def _build(files, kind, tokenizer, out: Path, encode, streams, options, on_error, progress) -> dict:
    dtype = token_dtype(tokenizer.vocab_size)
    writers = {name: _StreamWriter(out, name, dtype) for name in streams}
    report, counters = DataReport(), {}
    total = sum(f.stat().st_size for f in files)
    label = files[0].name + (f" (+{len(files) - 1} files)" if len(files) > 1 else "")
    bar, done_before, started = _Progress(label, total, progress), 0, time.monotonic()

    def flush(batch):
        seqs, counts = encode(batch)
        for name, lists in seqs.items():
            for ids in lists:
                writers[name].add(ids)
        for k, v in counts.items():
            counters[k] = counters.get(k, 0) + v

    for f in files:
        file_kind = "text" if kind == "pretrain" and f.suffix.lower() == ".txt" else kind
        batch, pos = [], 0
        for rec, _line, pos in iter_records(f, file_kind, on_error, report):
            batch.append(rec)
            if len(batch) >= BATCH_RECORDS:
                flush(batch)
                batch = []
                bar.update(done_before + pos)
        if batch:
            flush(batch)
        done_before += f.stat().st_size
        bar.update(done_before)
    for w in writers.values():
        w.close()
    n_tokens = {name: w.offsets[-1] for name, w in writers.items()}
    seconds = time.monotonic() - started
    print(f"tokenized {label}: {report.records} records, {sum(n_tokens.values())} tokens in {seconds:.1f} s"
          + (f", {report.skipped} bad records skipped" if report.skipped else ""), file=sys.stderr, flush=True)
    return {"version": CACHE_VERSION, "kind": kind, "files": [str(f.resolve()) for f in files],
            "tokenizer_hash": tokenizer.hash, "vocab_size": tokenizer.vocab_size, "dtype": np.dtype(dtype).name,
            "options": options, "streams": list(streams), "num_tokens": n_tokens,
            "sequences": {name: len(w.offsets) - 1 for name, w in writers.items()}, "counters": counters,
            "report": {"records": report.records, "skipped": report.skipped,
                       "errors": [[e.file, e.line, e.field, e.message] for e in report.errors]},
            "seconds": round(seconds, 3), "built_at": time.time()}
