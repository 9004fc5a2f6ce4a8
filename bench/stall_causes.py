"""What the UI thread was doing when the stall probe fired late (used by ``bench.ui_stall``).

Three kinds of spans, all on the UI thread, each with wall and thread-CPU time:
- every top-level Qt event dispatch (``TimedApplication.notify``): receiver and event type; a timer event names
  the timer's owner and interval, so "QTimer 150 ms of CurvesPane" points at one timer;
- named studio slots (``watch``: plot building, redraws, table refreshes, store reads on the UI thread), so a
  dispatch that runs many slots (one queued signal fans out to every pane) is split by slot;
- garbage collections (``gc.callbacks``), with their generation, in any thread (a collection holds the GIL).

A span whose wall time is far above its CPU time was waiting, not working. ``ThreadClock`` says what it waited
for: Linux's per-thread scheduler counters (``/proc/self/task/*/schedstat``: CPU time, time runnable but waiting
for a core) split a late probe interval of the UI thread into its own CPU, waiting for a core (other processes,
or this process's other threads, had both cores) and blocked (asleep on the GIL or a lock), and list the CPU
time each other thread of the process used meanwhile: a thread that ran Python then held the GIL.
``explain(start, end)`` returns the spans that overlap one late probe interval, longest first.
"""
from __future__ import annotations

import functools
import gc
import os
import threading
import time
from collections import deque

MIN_SPAN_S = 0.002  # shorter spans are not kept

# The studio's UI-thread work worth naming: (module, class, method).
WATCHED = (
    ("studio.panes.curves.view", "CurvesPane", "_build_spare"),
    ("studio.panes.curves.view", "CurvesPane", "_add_pending_plots"),
    ("studio.panes.curves.view", "CurvesPane", "rebuild_plots"),
    ("studio.panes.curves.view", "CurvesPane", "update_series"),
    ("studio.panes.curves.view", "CurvesPane", "refresh_runs"),
    ("studio.panes.curves.view", "CurvesPane", "_append_samples"),
    ("studio.panes.curves.presenter", "CurvesPresenter", "on_events"),
    ("studio.panes.curves.presenter", "CurvesPresenter", "set_runs"),
    ("studio.panes.runs.view", "RunsPane", "refresh"),
    ("studio.panes.runs.view", "RunsPane", "refresh_row"),
    ("studio.panes.runs.view", "RunsPane", "_show_detail"),
    ("studio.main_window", "MainWindow", "refresh_progress"),
    ("studio.main_window", "MainWindow", "_select_launched_run"),
    ("studio.worker.run_manager", "RunManager", "_on_ingested"),
    ("studio.worker.run_manager", "RunManager", "poll"),
    ("studio.worker.run_manager", "RunManager", "launch"),
    ("studio.worker.run_manager", "RunManager", "_start"),
    ("studio.store.run_store", "RunStore", "list_runs"),
    ("studio.store.run_store", "RunStore", "get_run"),
    ("studio.panes.chat.view", "ChatPane", "_render"),
    ("studio.panes.chat.presenter", "ChatPresenter", "_on_finished"),
    ("studio.panes.chat.presenter", "ChatPresenter", "save_histories"),
    ("studio.panes.chat.presenter", "ChatPresenter", "refresh_models"),
    ("studio.panes.config.view", "ConfigPane", "refresh_checkpoints"),
    ("studio.panes.export.presenter", "ExportPresenter", "refresh_sources"),
    ("studio.panes.evaluate.presenter", "EvaluatePresenter", "refresh_sources"),
    ("studio.context", "StudioContext", "select_run"),
    ("studio.panes.curves.view", "CurvesPane", "show_run"),
)


class Spans:
    """Spans of the thread that made this object (the UI thread); other threads' work is not kept (Qt calls
    ``notify`` in every thread with an event loop: the ingest thread's timer is not the UI's stall)."""

    def __init__(self) -> None:
        self.spans: deque = deque(maxlen=20000)  # (end, wall_s, cpu_s, label)
        self.depth = 0
        self.thread = threading.get_ident()
        self._gcs: dict[int, tuple] = {}  # thread ident -> (start, thread CPU) of a collection under way

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
        """A collection in any thread: it holds the GIL throughout, so one in another thread blocks the UI
        thread too (kept with that thread's name; its CPU is that thread's)."""
        ident = threading.get_ident()
        if phase == "start":
            self._gcs[ident] = (time.perf_counter(), time.thread_time())
        elif ident in self._gcs:
            start, cpu0 = self._gcs.pop(ident)
            label = f"gc generation {info.get('generation')} ({info.get('collected', 0)} freed)"
            if ident == self.thread:
                self.add(start, cpu0, label)
            elif time.perf_counter() - start >= MIN_SPAN_S:
                self.spans.append((time.perf_counter(), time.perf_counter() - start, time.thread_time() - cpu0,
                                   f"{label} in thread {threading.current_thread().name}"))

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


class ThreadClock:
    """Per-thread CPU and run-queue time of this process, read from ``/proc/self/task/<tid>/schedstat`` (Linux;
    elsewhere ``available`` is False and ``interval`` returns None). ``tick()`` at each probe tick keeps the
    last reading; ``interval()`` after it gives what happened since the tick before."""

    def __init__(self) -> None:
        self.ui = threading.get_native_id()
        self.available = os.path.exists(f"/proc/self/task/{self.ui}/schedstat")
        self._prev: dict | None = None
        self._last: dict | None = None
        self._names: dict[int, str] = {}

    @staticmethod
    def read() -> dict[int, tuple[int, int]]:
        """{tid: (CPU ns, run-queue wait ns)} for every thread of this process."""
        out = {}
        for entry in os.scandir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{entry.name}/schedstat", "rb") as fh:
                    cpu, wait, _slices = fh.read().split()
            except (OSError, ValueError):
                continue  # the thread ended
            out[int(entry.name)] = (int(cpu), int(wait))
        return out

    def tick(self) -> None:
        if self.available:
            self._prev, self._last = self._last, self.read()

    def name(self, tid: int) -> str:
        if tid not in self._names:
            for thread in threading.enumerate():
                if thread.native_id is not None:
                    self._names.setdefault(thread.native_id, thread.name)
        if tid not in self._names:
            try:
                with open(f"/proc/self/task/{tid}/comm") as fh:
                    comm = fh.read().strip()  # a Qt or native thread: QThread's name, or the executable's
            except OSError:
                comm = "?"
            return f"{comm} (native {tid})"
        return self._names[tid]

    def interval(self, wall_s: float, idle_ms: float = 0.0, limit: int = 3) -> dict | None:
        """The last probe interval (``wall_s`` long, of which ``idle_ms`` the UI thread was meant to sleep until
        its timer) split for the UI thread, and the other threads' CPU."""
        if not self.available or self._prev is None or self._last is None:
            return None
        prev, last = self._prev, self._last
        cpu0, wait0 = prev.get(self.ui, (0, 0))
        cpu1, wait1 = last.get(self.ui, (0, 0))
        cpu_ms, runq_ms = (cpu1 - cpu0) / 1e6, (wait1 - wait0) / 1e6
        others = []
        for tid, (cpu, _wait) in last.items():
            if tid != self.ui:
                used = (cpu - prev.get(tid, (0, 0))[0]) / 1e6
                if used >= 0.5:
                    others.append({"thread": self.name(tid), "cpu_ms": round(used, 1)})
        others.sort(key=lambda o: -o["cpu_ms"])
        return {"wall_ms": round(wall_s * 1000, 1), "cpu_ms": round(cpu_ms, 1), "runqueue_ms": round(runq_ms, 1),
                "blocked_ms": round(max(0.0, wall_s * 1000 - idle_ms - cpu_ms - runq_ms), 1),
                "idle_ms": idle_ms, "others": others[:limit]}


def format_interval(split: dict | None) -> str:
    """'UI thread: 40 ms = 2 ms CPU + 30 ms waiting for a core + 8 ms blocked; meanwhile ingest 25 ms CPU, ...'."""
    if not split:
        return "per-thread scheduler counters unavailable"
    text = (f"UI thread {split['wall_ms']} ms = {split.get('idle_ms', 0):g} ms timer wait + {split['cpu_ms']} ms CPU + "
            f"{split['runqueue_ms']} ms waiting for a core + {split['blocked_ms']} ms blocked (GIL or lock)")
    if split["others"]:
        text += "; meanwhile " + ", ".join(f"{o['thread']} {o['cpu_ms']} ms CPU" for o in split["others"])
    return text


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
