"""The token cache: a dataset is tokenized once into memory-mapped arrays and re-used by every later run.

A cache entry is a directory `cache_dir/<kind>-<key>/` holding, per stream (e.g. "tokens", or "chosen" and
"rejected"), `<stream>.bin` (token ids, uint16 when the vocabulary fits, else uint32) and `<stream>.idx` (int64
offsets, one more than there are sequences), plus `meta.json`, written last. The key is the sha256 of the files'
absolute paths, sizes and mtimes, the kind, the tokenizer's hash and the options that change the tokens, so
editing a file or retraining the tokenizer builds a new entry.

An entry is built in shards under `.<kind>-<key>.partial/` and renamed into place when complete
(core/data/cache_build.py): a crash never leaves a half-written cache that looks complete, and a stopped or
killed build goes on from its last finished shard the next time anyone asks for the same entry. One process
builds an entry at a time: the others (the other ranks of a multi-GPU run, a second studio job) wait on the
entry's lock file `.<kind>-<key>.lock` and then open what it built, without any collective between them.

Progress and stop requests go through a `core.preparation.Preparation` (passed in, or the one the caller
installed with `core.preparation.preparing`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.data.cache_build import EntryBuilder, manifest_bytes_done, partial_dir, read_manifest, remove_shard_files
from core.data.formats import resolve_mapping
from core.data.records import DataError, DataReport
from core.data.sources import source_size, source_stamp
from core.preparation import FileProgress, Preparation, PrepareProgress, current_preparation

CACHE_VERSION = 1


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
        stamp = source_stamp(f)
        # a plain file keeps its old key ([path, size, mtime]); a save_to_disk folder lists its .arrow files
        stats.append(stamp[0] if f.is_file() else [str(f.resolve()), stamp])
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


class _EntryLock:
    """An exclusive lock on one entry, held by the process that builds it (flock: released by the kernel when
    that process dies, even by SIGKILL, so a waiter then takes over and resumes the build)."""

    def __init__(self, path: Path):
        self.path, self.fd = path, None

    def try_acquire(self) -> bool:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_nowait(self.fd)
            return True
        except OSError:
            os.close(self.fd)
            self.fd = None
            return False

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None


try:
    import fcntl

    def _lock_nowait(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except ImportError:  # Windows
    import msvcrt

    def _lock_nowait(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


WAIT_POLL_S = 0.25


def _wait_for_lock(lock: _EntryLock, final: Path, files: list[Path], prep: Preparation) -> PrepareProgress | None:
    """Wait until no other process builds this entry, reporting how far that process has got. Returns the
    progress reported while waiting (None when there was no wait)."""
    if lock.try_acquire():
        return None
    sizes = [source_size(f) for f in files]
    progress = PrepareProgress(cache=final.name, label=f"waiting for another process building {final.name}",
                               files=[FileProgress(str(f), s) for f, s in zip(files, sizes)], state="waiting")
    with prep.stoppable():
        while True:
            done = manifest_bytes_done(read_manifest(partial_dir(final)), sizes)
            for fp, size, before in zip(progress.files, sizes, np.cumsum([0] + sizes[:-1])):
                fp.bytes_done = int(min(size, max(0, done - before)))
            prep.update(progress)
            prep.check_stop()
            time.sleep(WAIT_POLL_S)
            if lock.try_acquire():
                return progress


def load_or_build(files, kind: str, tokenizer, cache_dir, encode: Callable, streams: tuple[str, ...],
                  options: dict | None = None, on_error: str = "raise", preparation: Preparation | None = None,
                  shard_bytes: int | None = None) -> TokenCache:
    """Open the cache entry for these files, building it first if needed (or finishing an interrupted build).

    `encode(records) -> (dict stream -> list of id lists, dict of counters)` turns a batch of validated records into
    token sequences; a record may give no sequence (e.g. nothing left to learn from after truncation) as long as it
    says so in a counter, which ends up in meta.json. A stop asked for through the Preparation raises
    `core.preparation.PreparationStopped` once the shard in progress is kept.
    """
    files = [Path(f) for f in files]
    options = dict(options or {}, on_error=on_error)
    mappings = {str(i): resolve_mapping(f).to_dict() for i, f in enumerate(files)
                if kind != "text" and f.suffix.lower() not in (".txt", ".md") and not resolve_mapping(f).native}
    if mappings:  # how rows became records changes the tokens; native files keep the keys they had
        options["mappings"] = mappings
    key = cache_key(files, kind, tokenizer, options)
    cache_dir = Path(cache_dir)
    final = cache_dir / f"{kind}-{key[:24]}"
    if (final / "meta.json").is_file():
        return TokenCache(final, reused=True)
    prep = preparation or current_preparation()
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = _EntryLock(cache_dir / f".{final.name}.lock")
    waited = _wait_for_lock(lock, final, files, prep)
    try:
        if (final / "meta.json").is_file():  # the process we waited for built it
            if waited is not None:
                for fp in waited.files:
                    fp.bytes_done = fp.bytes_total
                waited.state = "done"
                prep.update(waited, force=True)
            return TokenCache(final, reused=True)
        for old in cache_dir.glob(f".{final.name}.tmp-*"):  # scratch of builds from before shards existed
            shutil.rmtree(old, ignore_errors=True)
        dtype = token_dtype(tokenizer.vocab_size)
        meta_base = {"version": CACHE_VERSION, "kind": kind, "files": [str(f.resolve()) for f in files],
                     "tokenizer_hash": tokenizer.hash, "tokenizer": str(getattr(tokenizer, "source", "")),
                     "vocab_size": tokenizer.vocab_size,
                     "dtype": np.dtype(dtype).name, "options": options, "streams": list(streams)}
        builder = EntryBuilder(files, kind, final, encode, streams, dtype, meta_base, on_error, prep, shard_bytes)
        meta = builder.run()
        os.replace(builder.out, final)
        remove_shard_files(final)
    finally:
        lock.release()
    print(f"tokenized {builder.progress.label[len('tokenizing '):]}: {meta['report']['records']} records, "
          f"{sum(meta['num_tokens'].values())} tokens in {meta['seconds']:.1f} s"
          + (f", {meta['report']['skipped']} bad records skipped" if meta['report']['skipped'] else "")
          + (f" ({meta['resumed_bytes'] / 1e6:.1f} MB kept from an earlier attempt)" if meta["resumed_bytes"] else ""),
          file=sys.stderr, flush=True)
    return TokenCache(final, reused=False)


# ---- what is in a cache directory -----------------------------------------------------------------------------

@dataclass
class CacheEntry:
    path: Path
    kind: str
    files: list[str]
    size_bytes: int
    complete: bool            # False: a build that was stopped or killed (it resumes when asked for again)
    num_tokens: int = 0
    built_at: float | None = None
    done_fraction: float = 1.0
    tokenizer: str = ""       # the folder it was loaded from, as the build saw it
    options: dict = field(default_factory=dict)  # what changes the tokens: max_len (sft, dpo), on_error

    @property
    def name(self) -> str:
        """The entry's name, the same for its partial and its finished form (`minimind data caches --delete`)."""
        return self.path.name.removeprefix(".").removesuffix(".partial")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_caches(cache_dir) -> list[CacheEntry]:
    """The entries of a cache directory, finished and partial, newest first."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    out = []
    for d in sorted(cache_dir.iterdir()):
        if not d.is_dir():
            continue
        if (d / "meta.json").is_file() and not d.name.startswith("."):
            try:
                meta = json.loads((d / "meta.json").read_text())
            except (OSError, ValueError):
                continue
            out.append(CacheEntry(d, meta.get("kind", ""), list(meta.get("files", [])), _dir_size(d), True,
                                  int(sum(meta.get("num_tokens", {}).values())), meta.get("built_at"),
                                  tokenizer=meta.get("tokenizer", ""), options=meta.get("options", {})))
        elif d.name.startswith(".") and d.name.endswith(".partial"):
            manifest = read_manifest(d) or {}
            shards, sizes = manifest.get("shards") or [], manifest.get("sizes") or []
            done = manifest_bytes_done(manifest, sizes) / sum(sizes) if sum(sizes) else 0.0
            base = manifest.get("meta") or {}
            out.append(CacheEntry(d, d.name[1:].split("-")[0], list(manifest.get("files", [])), _dir_size(d), False,
                                  int(sum(sum(s["tokens"].values()) for s in shards)), d.stat().st_mtime, done,
                                  tokenizer=base.get("tokenizer", ""), options=base.get("options", {})))
    return sorted(out, key=lambda e: e.built_at or 0, reverse=True)


def describe_cache_options(entry: CacheEntry) -> str:
    """"tokenizer v3, max_len 512" for people: which runs can re-use the entry (pretrain windows are cut when a
    run opens the cache, so one pretrain entry serves every seq_len)."""
    tok = Path(entry.tokenizer).name if entry.tokenizer else "?"
    length = f"max_len {entry.options['max_len']}" if "max_len" in entry.options else "any seq_len"
    skip = ", bad records skipped" if entry.options.get("on_error") == "skip" else ""
    return f"tokenizer {tok}, {length}{skip}"


def delete_cache(entry: Path) -> None:
    """Delete one entry (finished or partial) and its lock file. Refuses a path that is not a cache entry."""
    entry = Path(entry)
    finished = (entry / "meta.json").is_file() and not entry.name.startswith(".")
    if not (finished or (entry.name.startswith(".") and entry.name.endswith(".partial"))):
        raise ValueError(f"{entry}: not a token-cache entry (no meta.json, not a .partial build)")
    name = entry.name[1:-len(".partial")] if entry.name.endswith(".partial") else entry.name
    lock = _EntryLock(entry.parent / f".{name}.lock")
    if not lock.try_acquire():
        raise ValueError(f"{entry}: another process is building this entry right now; stop it first")
    try:
        shutil.rmtree(entry)
    finally:
        lock.release()
    (entry.parent / f".{name}.lock").unlink(missing_ok=True)
