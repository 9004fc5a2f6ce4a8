"""What the UI thread was doing when the stall probe fired late (used by ``bench.ui_stall``).

Three kinds of spans, all on the UI thread, each with wall and thread-CPU time:
- every top-level Qt event dispatch (``TimedApplication.notify``): receiver and event type; a timer event names
  the timer's owner and interval, so "QTimer 150 ms of CurvesPane" points at one timer;
- named studio slots (``watch``: plot building, redraws, table refreshes, store reads on the UI thread), so a
  dispatch that runs many slots (one queued signal fans out to every pane) is split by slot;
- garbage collections (``gc.callbacks``), with their generation.

A span whose wall time is far above its CPU time was waiting (another process had the core, or another thread
held the GIL), not working. ``explain(start, end)`` returns the spans that overlap one late probe interval,
longest first.
"""
from __future__ import annotations

import functools
import gc
import threading
import time
from collections import deque

MIN_SPAN_S = 0.002  # shorter spans are not kept

# The studio's UI-thread work worth naming: (module, class, method).
WATCHED = (
    ("studio.panes.curves", "CurvesPane", "_build_spare"),
    ("studio.panes.curves", "CurvesPane", "_add_pending_plots"),
    ("studio.panes.curves", "CurvesPane", "rebuild_plots"),
    ("studio.panes.curves", "CurvesPane", "update_series"),
    ("studio.panes.curves", "CurvesPane", "refresh_runs"),
    ("studio.panes.curves", "CurvesPane", "_append_samples"),
    ("studio.panes.curves_presenter", "CurvesPresenter", "on_events"),
    ("studio.panes.curves_presenter", "CurvesPresenter", "set_runs"),
    ("studio.panes.runs", "RunsPane", "refresh"),
    ("studio.panes.runs", "RunsPane", "refresh_row"),
    ("studio.panes.runs", "RunsPane", "_show_detail"),
    ("studio.main_window", "MainWindow", "refresh_progress"),
    ("studio.main_window", "MainWindow", "_select_launched_run"),
    ("studio.worker.run_manager", "RunManager", "_on_ingested"),
    ("studio.worker.run_manager", "RunManager", "poll"),
    ("studio.store.run_store", "RunStore", "list_runs"),
    ("studio.store.run_store", "RunStore", "get_run"),
)


class Spans:
    """Spans of the thread that made this object (the UI thread); other threads' work is not kept (Qt calls
    ``notify`` in every thread with an event loop: the ingest thread's timer is not the UI's stall)."""

    def __init__(self) -> None:
        self.spans: deque = deque(maxlen=20000)  # (end, wall_s, cpu_s, label)
        self.depth = 0
        self.thread = threading.get_ident()
        self._gc: tuple | None = None

    def add(self, start: float, cpu0: float, label: str) -> None:
        end = time.perf_counter()
        if end - start >= MIN_SPAN_S and threading.get_ident() == self.thread:
            self.spans.append((end, end - start, time.thread_time() - cpu0, label))

    def explain(self, start: float, end: float, limit: int = 4) -> list[dict]:
        """Spans overlapping [start, end], longest first."""
        hits = [s for s in self.spans if s[0] >= start and s[0] - s[1] <= end]
        hits.sort(key=lambda s: -s[1])
        return [{"what": label, "wall_ms": round(wall * 1000, 1), "cpu_ms": round(cpu * 1000, 1)}
                for _end, wall, cpu, label in hits[:limit]]

    # ------------------------------------------------------------------------ garbage collection
    def watch_gc(self) -> None:
        gc.callbacks.append(self._on_gc)

    def unwatch_gc(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if threading.get_ident() != self.thread:
            return
        if phase == "start":
            self._gc = (time.perf_counter(), time.thread_time())
        elif self._gc is not None:
            start, cpu0 = self._gc
            self._gc = None
            self.add(start, cpu0, f"gc generation {info.get('generation')} ({info.get('collected', 0)} freed)")

    # ------------------------------------------------------------------------ named slots
    def watch(self, targets=WATCHED) -> list:
        """Wrap each named method (before the window is built, so connections take the wrapper); returns what
        ``unwatch`` needs."""
        import importlib

        undo = []
        for module_name, cls_name, method in targets:
            try:
                cls = getattr(importlib.import_module(module_name), cls_name)
                original = cls.__dict__[method]
            except (ImportError, AttributeError, KeyError):
                continue  # renamed or absent: that slot is simply not named
            setattr(cls, method, self._timed(original, f"{cls_name}.{method}"))
            undo.append((cls, method, original))
        return undo

    @staticmethod
    def unwatch(undo: list) -> None:
        for cls, method, original in undo:
            setattr(cls, method, original)

    def _timed(self, fn, label: str):
        spans = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            start, cpu0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spans.add(start, cpu0, label)
        return timed


def describe(receiver, event) -> str:
    """'<event type> -> <receiver>', a timer named by its owner and interval."""
    try:
        kind = event.type().name
    except Exception:  # noqa: BLE001 (an event type Qt has no name for)
        kind = str(int(event.type()))
    name = type(receiver).__name__
    try:
        if name == "QTimer":
            parent = receiver.parent()
            name = f"QTimer {receiver.interval()} ms of {type(parent).__name__ if parent is not None else 'nobody'}"
        elif hasattr(receiver, "objectName") and receiver.objectName():
            name += f" '{receiver.objectName()}'"
    except RuntimeError:  # the dispatch deleted its receiver (a single-shot timer, a closed widget)
        name += " (deleted)"
    return f"{kind} -> {name}"


def timed_application_class():
    """A QApplication whose ``notify`` records every top-level event dispatch in ``app.spans``."""
    from PySide6.QtWidgets import QApplication

    class TimedApplication(QApplication):
        def __init__(self, argv) -> None:
            super().__init__(argv)
            self.spans = Spans()

        def notify(self, receiver, event):  # noqa: D401 (Qt name)
            spans = self.spans
            if spans.depth or threading.get_ident() != spans.thread:
                return super().notify(receiver, event)
            spans.depth += 1
            start, cpu0 = time.perf_counter(), time.thread_time()
            try:
                return super().notify(receiver, event)
            finally:
                spans.depth -= 1
                if time.perf_counter() - start >= MIN_SPAN_S:
                    spans.add(start, cpu0, describe(receiver, event))

    return TimedApplication
