"""The trainer's event stream (schema v1: core/event_schema.py, docs/events.md) and its human log.

Events go to stdout, one JSON object per line, flushed (the studio reads them live), and are appended to
`run_dir/events.jsonl`, flushed per line, so a studio that restarts can replay the run. Only rank 0 writes.
Human logs go to stderr. The studio may die while we train: a write to a closed pipe must not kill the run,
so a broken stdout/stderr is detached (pointed at /dev/null) and training goes on writing events.jsonl.
Sinks (the external trackers of core/train/trackers.py) are fed every event written; one that raises is
dropped with one `warning` event, and the run goes on.
"""
from __future__ import annotations

import errno
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from core.event_schema import make_event


def _jsonable(value: Any) -> Any:
    """JSON has no NaN/Inf: they become null (an `error` event says why)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # 0-dim tensors / numpy scalars
        return _jsonable(value.item())
    return value


def _is_broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.EINVAL))


def _detach(stream_name: str) -> None:
    """Point a dead stdio stream at /dev/null so later writes (and interpreter shutdown) stay quiet."""
    stream = getattr(sys, stream_name)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        setattr(sys, stream_name, open(os.devnull, "w"))


def safe_write(stream_name: str, text: str) -> bool:
    """Write and flush to sys.stdout/sys.stderr; on a broken pipe detach the stream and return False."""
    stream = getattr(sys, stream_name)
    try:
        stream.write(text)
        stream.flush()
        return True
    except (BrokenPipeError, OSError, ValueError) as exc:
        if isinstance(exc, ValueError) or _is_broken_pipe(exc):
            _detach(stream_name)
            return False
        raise


def log(message: str) -> None:
    """A human log line on stderr (never raises on a closed pipe)."""
    safe_write("stderr", f"[{time.strftime('%H:%M:%S')}] {message}\n")


class EventLog:
    """Writes schema-v1 events. Ranks other than 0 get a silent instance (`enabled=False`).

    `sinks` get each event after it is written (`run_finished` before, so what a tracker says while closing
    precedes the run's end): objects with `handle(event)`, `close()`, `describe_failure(exc)`."""

    def __init__(self, run_dir: str | Path | None, enabled: bool = True, stdout: bool = True, sinks=()):
        self.enabled = enabled
        self.stdout = stdout and enabled
        self.sinks = list(sinks) if enabled else []
        self._file = None
        if enabled and run_dir is not None:
            path = Path(run_dir) / "events.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")

    def emit(self, type: str, step: int, **fields: Any) -> dict | None:
        if not self.enabled:
            return None
        event = make_event(type, step, **_jsonable(fields))  # ValueError when it breaks the schema
        if type == "run_finished":
            self._feed(event)
        self._write(event)
        if type != "run_finished":
            self._feed(event)
        return event

    def _write(self, event: dict) -> None:
        line = json.dumps(event, ensure_ascii=False, allow_nan=False) + "\n"
        if self._file is not None:
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:  # disk full, file system gone: keep training and keep the stdout stream
                self._drop_file(exc)
        if self.stdout and not safe_write("stdout", line):
            self.stdout = False  # the reader is gone; keep training, events.jsonl still has everything

    def _feed(self, event: dict) -> None:
        """Hand `event` to each sink; a sink that raises is closed and dropped, said once as a `warning`."""
        for sink in list(self.sinks):
            try:
                sink.handle(event)
            except Exception as exc:  # a tracker never fails a run, whatever it raises
                self.sinks.remove(sink)
                _close_quietly(sink)
                self.warning(event["step"], f"{sink.describe_failure(exc)}; it logs nothing more in this run "
                             "(the run goes on, events.jsonl has every metric)")

    def warning(self, step: int, message: str) -> None:
        log(f"warning: {message}")
        self.emit("warning", step, message=message)

    def error(self, step: int, message: str) -> None:
        log(f"error: {message}")
        self.emit("error", step, message=message)

    def _drop_file(self, exc: OSError) -> None:
        """Stop writing events.jsonl after a failed write; said once on stderr, events still go to stdout."""
        log(f"warning: cannot write {getattr(self._file, 'name', 'events.jsonl')} ({exc}); events go to stdout "
            "only from now on, so this run's history will be incomplete if the studio restarts")
        f, self._file = self._file, None
        try:
            f.close()
        except OSError:
            pass

    def close(self) -> None:
        """Close the sinks, flush and close events.jsonl; never raises (it runs in the trainer's `finally`,
        before dist shutdown)."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            _close_quietly(sink)
        if self._file is not None:
            f, self._file = self._file, None
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError:
                pass
            try:
                f.close()
            except OSError:
                pass


def _close_quietly(sink) -> None:
    try:
        sink.close()
    except Exception as exc:  # closing a tracker that already failed, or a server gone: said, never raised
        log(f"warning: closing {type(sink).__name__} failed: {type(exc).__name__}: {exc}")
