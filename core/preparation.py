"""Data preparation as a phase of its own: where it stands, how it is told to stop, and how people read it.

Tokenizing a real-size corpus (a 1.6 GB `pretrain_hq.jsonl`) takes tens of minutes. Whoever asked for it follows
it here: the training engine (the `prepare` event and a stderr line), `minimind data prepare` (a progress line)
and the studio (the Runs table, the status bar and the guide all show `describe_prepare(event)`).

A `Preparation` carries the caller's two hooks, `report(progress)` and `should_stop()`. The token cache
(`core.data.cache.load_or_build`) takes one as an argument, or finds the one installed with `preparing(...)`:
the engine installs its own around a recipe's `setup`, so every dataset a recipe builds reports and stops
through it without the recipe passing anything along.

Importable without torch, numpy or Qt (the studio formats the events with it).
"""
from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

STATES = ("running", "waiting", "done", "stopped")


class PreparationStopped(BaseException):
    """Raised inside a preparation that was asked to stop, at a point where everything finished is kept.

    A BaseException, as KeyboardInterrupt is: a recipe's `except Exception` around some step must not swallow a
    stop."""


@dataclass
class FileProgress:
    path: str
    bytes_total: int
    bytes_done: int = 0
    records: int = 0

    def fields(self) -> dict:
        return {"path": self.path, "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
                "records": self.records}


@dataclass
class PrepareProgress:
    """One preparation's progress: bytes of input done per file, records, and (derived) rate and time left.

    `resumed_bytes` is what earlier, interrupted builds had finished when this one began: it counts as done but
    not towards the rate, so a resumed build does not claim an absurd speed."""

    cache: str                     # the cache entry being built (its directory name)
    label: str                     # for people: "tokenizing pretrain_hq.jsonl"
    files: list[FileProgress]
    resumed_bytes: int = 0
    state: str = "running"         # running | waiting (another process builds it) | done | stopped
    started: float = field(default_factory=time.monotonic)

    @property
    def bytes_done(self) -> int:
        return sum(f.bytes_done for f in self.files)

    @property
    def bytes_total(self) -> int:
        return sum(f.bytes_total for f in self.files)

    @property
    def records(self) -> int:
        return sum(f.records for f in self.files)

    def rate(self, now: float | None = None) -> float | None:
        """Bytes of input per second in this process; None until there is something to measure."""
        elapsed = (now if now is not None else time.monotonic()) - self.started
        new = self.bytes_done - self.resumed_bytes
        return new / elapsed if elapsed > 0.2 and new > 0 else None

    def eta(self, now: float | None = None) -> float | None:
        if self.state == "done":
            return 0.0
        rate = self.rate(now)
        return (self.bytes_total - self.bytes_done) / rate if rate else None

    def fields(self) -> dict:
        """The `prepare` event's fields (core/event_schema.py, docs/events.md)."""
        now = time.monotonic()
        rate, eta = self.rate(now), self.eta(now)
        return {"state": self.state, "cache": self.cache, "label": self.label, "bytes_done": self.bytes_done,
                "bytes_total": self.bytes_total, "records": self.records, "resumed_bytes": self.resumed_bytes,
                "rate": None if rate is None else round(rate, 1), "eta_s": None if eta is None else round(eta, 1),
                "files": [f.fields() for f in self.files]}


def format_left(seconds: float | None) -> str:
    """"12 min left", "40 s left", "2 h 05 min left"; "" when not known yet."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s left"
    minutes = (seconds + 30) // 60
    if minutes < 60:
        return f"{minutes} min left"
    return f"{minutes // 60} h {minutes % 60:02d} min left"


def prepare_fraction(event: dict) -> float:
    total = event.get("bytes_total") or 0
    return min(1.0, max(0.0, (event.get("bytes_done") or 0) / total)) if total else 0.0


def describe_prepare(event: dict, detail: bool = False) -> str:
    """The one line people read: "preparing data 37 %, 12 min left" (with `detail`, what and how fast too)."""
    state = event.get("state", "running")
    pct = int(100 * prepare_fraction(event))
    if state == "done":
        text = "data ready"
    elif state == "stopped":
        text = f"data preparation stopped at {pct} %"
    elif state == "waiting":
        text = f"waiting for the data ({pct} % prepared by another process)"
    else:
        left = format_left(event.get("eta_s"))
        text = f"preparing data {pct} %" + (f", {left}" if left else "")
    if detail:
        parts = [str(event.get("label") or "")]
        if event.get("rate"):
            parts.append(f"{event['rate'] / 1e6:.1f} MB/s")
        done, total = event.get("bytes_done") or 0, event.get("bytes_total") or 0
        parts.append(f"{done / 1e6:.1f} / {total / 1e6:.1f} MB")
        if event.get("resumed_bytes"):
            parts.append(f"{event['resumed_bytes'] / 1e6:.1f} MB kept from an earlier attempt")
        text += " (" + ", ".join(p for p in parts if p) + ")"
    return text


class Preparation:
    """A caller's hooks into a long preparation: `report(PrepareProgress)`, at most every `interval` seconds
    (and always when the state changes), and `should_stop() -> bool`, asked between batches.

    `cooperative` is True while a preparation is at a point where it asks `should_stop` often (tokenizing,
    waiting for another process): a signal handler then only has to set the flag, instead of interrupting."""

    def __init__(self, report: Callable[[PrepareProgress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, interval: float = 1.0):
        self._report, self._should_stop, self.interval = report, should_stop, interval
        self._last_time, self._last_state = 0.0, None
        self.cooperative = False

    def update(self, progress: PrepareProgress, force: bool = False) -> None:
        now = time.monotonic()
        if self._report is None:
            return
        if force or progress.state != self._last_state or now - self._last_time >= self.interval:
            self._last_time, self._last_state = now, progress.state
            self._report(progress)

    def stop_requested(self) -> bool:
        return bool(self._should_stop and self._should_stop())

    def check_stop(self) -> None:
        if self.stop_requested():
            raise PreparationStopped("stopped while preparing data")

    @contextlib.contextmanager
    def stoppable(self) -> Iterator[None]:
        """A section that asks `should_stop` between short pieces of work (see `cooperative`)."""
        before, self.cooperative = self.cooperative, True
        try:
            yield
        finally:
            self.cooperative = before


_CURRENT: contextvars.ContextVar[Preparation | None] = contextvars.ContextVar("preparation", default=None)


@contextlib.contextmanager
def preparing(preparation: Preparation) -> Iterator[Preparation]:
    """Install `preparation` for the preparations started inside this block (in this thread or task)."""
    token = _CURRENT.set(preparation)
    try:
        yield preparation
    finally:
        _CURRENT.reset(token)


def current_preparation() -> Preparation:
    """The installed Preparation, or a silent one that never stops."""
    return _CURRENT.get() or Preparation()
