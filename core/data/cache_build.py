"""Building one token-cache entry in shards, so that a stopped, crashed or killed build goes on where it was.

While an entry `<kind>-<key>` is built it lives in `.<kind>-<key>.partial/` beside the finished entries:

    manifest.json                 the finished shards, in order, each with its sha256 per file and the state
                                  after it (where in which file reading goes on, the record report, counters)
    shard-00007.<stream>.bin      token ids of the shard's sequences (the entry's dtype)
    shard-00007.<stream>.len      their lengths (int64)

A shard closes after the batch that takes its input past `shard_bytes` (1 % of the input, between 1 MB and
64 MB), at the end of each file, and when a stop is asked for. Its files are written under a `.tmp` name and
renamed; the manifest is then replaced the same way, so a shard counts only once it is complete. A resumed build
checks every listed shard against its checksum, drops the first bad one and all after it, deletes leftover `.tmp`
files, and reads on from the last good shard's position. So shards are not fsynced (3 ms a file here, 300 times
per entry): what a power loss tears, the checksums find. The finished entry's files are fsynced.

When the input is done the shards are concatenated into the entry's usual files (`<stream>.bin`, `<stream>.idx`,
then `meta.json`), the directory is renamed to `<kind>-<key>`, and the shard files are deleted. The result is
byte for byte the one an uninterrupted build writes: shard boundaries never change a token.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from core.checksum import sha256_file
from core.data.records import DataError, DataReport, iter_records_at
from core.data.sources import source_size
from core.preparation import FileProgress, Preparation, PreparationStopped, PrepareProgress

MANIFEST = "manifest.json"
BATCH_RECORDS = 512  # records per encode call: big enough for tokenizers' Rust loop, small enough to stop quickly
MIN_SHARD_BYTES, MAX_SHARD_BYTES = 1 << 20, 64 << 20


def default_shard_bytes(total_input: int) -> int:
    """Input bytes per shard: about 100 shards per entry, so a kill loses at most ~1 % of the work."""
    return min(MAX_SHARD_BYTES, max(MIN_SHARD_BYTES, total_input // 100))


def partial_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


def _write_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _report_state(report: DataReport) -> dict:
    return {"records": report.records, "skipped": report.skipped,
            "errors": [[e.file, e.line, e.field, e.message] for e in report.errors]}


def _report_from(state: dict) -> DataReport:
    report = DataReport(records=state["records"], skipped=state["skipped"])
    report.errors = [DataError(*e) for e in state["errors"]]
    return report


class _ShardWriter:
    """One shard's files, written under .tmp names and hashed as they grow."""

    def __init__(self, out: Path, index: int, streams, dtype):
        self.out, self.name, self.dtype = out, f"shard-{index:05d}", dtype
        self.streams = list(streams)
        self.files, self.hashes, self.lengths = {}, {}, {s: [] for s in self.streams}
        for s in self.streams:
            fname = f"{self.name}.{s}.bin"
            self.files[fname] = open(out / (fname + ".tmp"), "wb")
            self.hashes[fname] = hashlib.sha256()
        self.input_bytes = 0

    def add(self, stream: str, sequences: list) -> None:
        """Append a batch's sequences (lists of ids): one write and one hash update per batch."""
        lengths = [len(ids) for ids in sequences]
        data = np.concatenate([np.asarray(ids, dtype=self.dtype) for ids in sequences] or
                              [np.zeros(0, self.dtype)]).tobytes()
        fname = f"{self.name}.{stream}.bin"
        self.files[fname].write(data)
        self.hashes[fname].update(data)
        self.lengths[stream].extend(lengths)

    def commit(self) -> dict:
        """Make the shard's files final; returns what the manifest records of it."""
        for s in self.streams:
            lengths = np.asarray(self.lengths[s], dtype=np.int64).tobytes()
            fname = f"{self.name}.{s}.len"
            _write_atomic(self.out / fname, lengths)
            self.hashes[fname] = hashlib.sha256(lengths)
        for fname, fh in self.files.items():
            fh.close()
            os.replace(self.out / (fname + ".tmp"), self.out / fname)
        return {"name": self.name, "sha256": {f: h.hexdigest() for f, h in sorted(self.hashes.items())},
                "sequences": {s: len(v) for s, v in self.lengths.items()},
                "tokens": {s: int(sum(v)) for s, v in self.lengths.items()}}

    def discard(self) -> None:
        for fname, fh in self.files.items():
            fh.close()
            (self.out / (fname + ".tmp")).unlink(missing_ok=True)


def _good_shards(out: Path, manifest: dict) -> list[dict]:
    """The manifest's shards up to the first one whose files are missing or fail their checksum."""
    good = []
    for shard in manifest.get("shards", []):
        ok = all((out / f).is_file() and sha256_file(out / f) == digest for f, digest in shard["sha256"].items())
        if not ok:
            break
        good.append(shard)
    return good


def read_manifest(out: Path) -> dict | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def manifest_bytes_done(manifest: dict | None, sizes: list[int]) -> int:
    """Input bytes the manifest's finished shards cover (what another process has built so far)."""
    shards = (manifest or {}).get("shards") or []
    if not shards:
        return 0
    end = shards[-1]["after"]["position"]
    return sum(sizes[:end[0]]) + (end[1] if end[0] < len(sizes) else 0)


class EntryBuilder:
    """Builds (or goes on building) one entry; `run()` returns the meta.json it wrote."""

    def __init__(self, files: list[Path], kind: str, final: Path, encode: Callable, streams: tuple[str, ...],
                 dtype, meta_base: dict, on_error: str, preparation: Preparation, shard_bytes: int | None = None):
        self.files, self.kind, self.final, self.encode = files, kind, final, encode
        self.streams, self.dtype, self.meta_base, self.on_error = streams, dtype, meta_base, on_error
        self.prep = preparation
        self.out = partial_dir(final)
        self.sizes = [source_size(f) for f in files]
        self.shard_bytes = shard_bytes or default_shard_bytes(sum(self.sizes))
        label = files[0].name + (f" (+{len(files) - 1} files)" if len(files) > 1 else "")
        self.progress = PrepareProgress(cache=final.name, label=f"tokenizing {label}",
                                        files=[FileProgress(str(f), s) for f, s in zip(files, self.sizes)])

    # ---- state ---------------------------------------------------------------------------------------------
    def _resume(self) -> None:
        """Load the finished shards of an earlier attempt (if any) and the state after the last one."""
        self.out.mkdir(parents=True, exist_ok=True)
        for leftover in self.out.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        manifest = read_manifest(self.out) or {}
        if manifest.get("entry") != self.final.name or manifest.get("streams") != list(self.streams):
            manifest = {}
        self.shards = _good_shards(self.out, manifest)
        listed = {f for s in self.shards for f in s["sha256"]}
        for stray in self.out.glob("shard-*"):  # renamed but never listed, or after a bad shard
            if stray.name not in listed:
                stray.unlink(missing_ok=True)
        after = self.shards[-1]["after"] if self.shards else None
        self.position = list(after["position"]) if after else [0, 0, 0]  # file index, byte offset, lines read
        self.report = _report_from(after["report"]) if after else DataReport()
        self.counters = dict(after["counters"]) if after else {}
        self.file_records = list(after["file_records"]) if after else [0] * len(self.files)
        self.seconds_before = float(after["seconds"]) if after else 0.0
        for i, fp in enumerate(self.progress.files):
            fp.records = self.file_records[i]
            fp.bytes_done = (self.sizes[i] if i < self.position[0] else
                             self.position[1] if i == self.position[0] else 0)
        self.progress.resumed_bytes = self.progress.bytes_done

    def _commit(self, shard: _ShardWriter) -> None:
        entry = shard.commit()
        entry["after"] = {"position": list(self.position), "report": _report_state(self.report),
                          "counters": dict(self.counters), "file_records": list(self.file_records),
                          "seconds": round(self.seconds_before + time.monotonic() - self.started, 3)}
        self.shards.append(entry)
        manifest = {"version": 1, "entry": self.final.name, "streams": list(self.streams),
                    "dtype": np.dtype(self.dtype).name, "files": [str(f) for f in self.files], "sizes": self.sizes,
                    "meta": {k: self.meta_base.get(k) for k in ("tokenizer", "options")}, "shards": self.shards}
        _write_atomic(self.out / MANIFEST, json.dumps(manifest).encode())

    # ---- the loop ------------------------------------------------------------------------------------------
    def run(self) -> dict:
        if (self.out / "meta.json").is_file():  # finished, but not yet renamed into place
            return json.loads((self.out / "meta.json").read_text())
        self._resume()
        self.started = time.monotonic()
        self.progress.started = self.started
        shard = None
        self._pending = None
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        try:
            with self.prep.stoppable():
                while self.position[0] < len(self.files):
                    shard = _ShardWriter(self.out, len(self.shards), self.streams, self.dtype)
                    shard = self._fill(shard)
            self.progress.state = "done"
            self.prep.update(self.progress, force=True)
            return self._finalize()
        except PreparationStopped:
            self.progress.state = "stopped"
            self.prep.update(self.progress, force=True)
            raise
        finally:
            self._encoder.shutdown(wait=True)
            if shard is not None:
                shard.discard()

    def _fill(self, shard: _ShardWriter) -> _ShardWriter | None:
        """Tokenize into `shard` until it is full, its file ends or a stop is asked for; commit it. Returns the
        writer still open (None once committed).

        Batch k is encoded on the encoder thread while this thread reads and validates batch k+1 and writes batch
        k-1: tokenizers' Rust code releases the GIL and spreads a batch over every core, so the reading, checking
        and writing no longer leave the cores idle between batches."""
        self.prep.check_stop()  # nothing of this shard exists yet: nothing to keep
        fi, pos, lines = self.position
        path = self.files[fi]
        file_kind = "text" if self.kind == "pretrain" and path.suffix.lower() == ".txt" else self.kind
        batch, last = [], None
        try:
            for rec, _line, rpos, rlines in iter_records_at(path, file_kind, self.on_error, self.report,
                                                            (pos, lines)):
                batch.append(rec)
                last = (rpos, rlines)
                if len(batch) >= BATCH_RECORDS:
                    self._submit(shard, batch, fi, last)
                    shard.input_bytes += last[0] - pos
                    pos, batch = last[0], []
                    stop = self.prep.stop_requested()
                    if shard.input_bytes >= self.shard_bytes or stop:
                        self._write_pending(shard)
                        self._commit(shard)
                        if stop:
                            raise PreparationStopped("stopped while tokenizing")
                        return None
            if batch:
                self._submit(shard, batch, fi, last)
            self._write_pending(shard)
        finally:
            self._forget_pending()
        self.position = [fi + 1, 0, 0]  # this file is done (its trailing bad lines are in the report)
        self.progress.files[fi].bytes_done = self.sizes[fi]
        self._commit(shard)
        self.prep.update(self.progress)
        return None

    def _submit(self, shard: _ShardWriter, batch: list, fi: int, last: tuple[int, int]) -> None:
        """Write the batch encoded before this one, then start encoding this one on the encoder thread."""
        self._write_pending(shard)
        self._pending = (self._encoder.submit(self.encode, batch), len(batch), fi, last)

    def _write_pending(self, shard: _ShardWriter) -> None:
        if self._pending is None:
            return
        future, n_records, fi, last = self._pending
        self._pending = None
        seqs, counts = future.result()
        for name, lists in seqs.items():
            shard.add(name, lists)
        for k, v in counts.items():
            self.counters[k] = self.counters.get(k, 0) + v
        self.file_records[fi] += n_records
        self.position = [fi, last[0], last[1]]
        fp = self.progress.files[fi]
        fp.bytes_done, fp.records = last[0], self.file_records[fi]
        self.prep.update(self.progress)

    def _forget_pending(self) -> None:
        """After an error or a stop: let the batch being encoded finish (its thread cannot be interrupted) and
        drop it; the shard it belonged to is discarded."""
        if self._pending is not None:
            self._pending[0].exception()  # waits; an encoding error here is not the one being raised
            self._pending = None

    # ---- the end -------------------------------------------------------------------------------------------
    def _finalize(self) -> dict:
        """Concatenate the shards into `<stream>.bin` / `<stream>.idx`, then write meta.json (last)."""
        n_tokens, n_seqs = {}, {}
        for s in self.streams:
            offsets = [np.zeros(1, dtype=np.int64)]
            total = 0
            with open(self.out / f"{s}.bin.tmp", "wb") as out:
                for shard in self.shards:
                    with open(self.out / f"{shard['name']}.{s}.bin", "rb") as src:
                        shutil.copyfileobj(src, out, 8 << 20)
                    lengths = np.fromfile(self.out / f"{shard['name']}.{s}.len", dtype=np.int64)
                    offsets.append(total + np.cumsum(lengths))
                    total += int(lengths.sum())
                out.flush()
                os.fsync(out.fileno())
            os.replace(self.out / f"{s}.bin.tmp", self.out / f"{s}.bin")
            idx = np.concatenate(offsets)
            _write_atomic(self.out / f"{s}.idx", idx.tobytes(), durable=True)
            n_tokens[s], n_seqs[s] = total, len(idx) - 1
        seconds = self.seconds_before + time.monotonic() - self.started
        meta = {**self.meta_base, "num_tokens": n_tokens, "sequences": n_seqs, "counters": self.counters,
                "report": _report_state(self.report), "seconds": round(seconds, 3), "built_at": time.time(),
                "shards": len(self.shards), "resumed_bytes": self.progress.resumed_bytes}
        _write_atomic(self.out / "meta.json", json.dumps(meta, indent=1, ensure_ascii=False).encode(), durable=True)
        return meta


def remove_shard_files(entry: Path) -> None:
    """Delete what only the build needed (shards, manifest) from a finished entry."""
    for f in list(entry.glob("shard-*")) + [entry / MANIFEST]:
        f.unlink(missing_ok=True)
