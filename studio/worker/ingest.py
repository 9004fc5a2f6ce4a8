"""Event ingestion off the UI thread: tail events.jsonl, store the batch in SQLite, hand the events to the UI.

Reading the files and the SQLite transaction are the only per-tick work that grows with the event rate, so they
run in a QThread; the UI thread only receives finished batches (a queued signal) for its plots and tables.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from studio.store import RunStore
from studio.store.recovery import report_bad_lines
from studio.store.tailer import EventTailer


def ingest_once(store: RunStore, run_id: str, tailer: EventTailer, everything: bool = False) -> tuple[list, dict]:
    """Read what is new (or everything left) and store it with the new offset in one transaction."""
    before = tailer.offset
    events, bad = tailer.read_all() if everything else tailer.read_new()
    if not events:
        report_bad_lines(Path(tailer.path).parent, bad, [])
        return [], {}
    try:
        changes = store.add_events(run_id, events, offset=tailer.offset)
    except BaseException:
        tailer.offset = before  # nothing was stored: read the same lines again next time
        raise
    # Lines that are not (valid) events: kept for the user next to the trainer's stderr, never retried.
    report_bad_lines(Path(tailer.path).parent, bad, changes["bad"])
    return changes.pop("events"), changes  # only valid events reach the panes


class IngestWorker(QObject):
    """Lives in the run manager's QThread. Its tailers are touched only by that thread."""

    ingested = Signal(str, object, object)  # run_id, events (list), changes (dict)
    drained = Signal(str)                   # run_id: everything up to the end of the file is stored

    def __init__(self, store: RunStore, poll_ms: int) -> None:
        super().__init__()
        self.store = store
        self.poll_ms = poll_ms
        self.tailers: dict[str, EventTailer] = {}
        self._timer: QTimer | None = None

    @Slot()
    def start(self) -> None:
        self._timer = QTimer(self)  # created here so it belongs to the worker thread
        self._timer.setInterval(self.poll_ms)
        self._timer.timeout.connect(self.poll)
        self._timer.start()

    @Slot()
    def stop(self) -> None:
        """Called (blocking) in this thread before it quits: a QTimer must die in the thread that owns it."""
        if self._timer is not None:
            self._timer.stop()
            self._timer.setParent(None)
            self._timer = None

    @Slot(str, str, int)
    def follow(self, run_id: str, path: str, offset: int) -> None:
        self.tailers[run_id] = EventTailer(Path(path), offset)

    @Slot(str)
    def drain(self, run_id: str) -> None:
        tailer = self.tailers.pop(run_id, None)
        if tailer is not None:
            self._ingest(run_id, tailer, everything=True)
        self.drained.emit(run_id)

    @Slot()
    def poll(self) -> None:
        for run_id, tailer in list(self.tailers.items()):
            self._ingest(run_id, tailer)

    def _ingest(self, run_id: str, tailer: EventTailer, everything: bool = False) -> None:
        try:
            events, changes = ingest_once(self.store, run_id, tailer, everything)
        except KeyError:  # the run was deleted meanwhile
            self.tailers.pop(run_id, None)
            return
        except Exception as exc:  # noqa: BLE001 - e.g. the DB is busy: the same lines are read again next tick
            print(f"studio: storing events of run {run_id} failed ({type(exc).__name__}: {exc}); retrying",
                  file=sys.stderr)
            return
        if events:
            self.ingested.emit(run_id, events, changes)
