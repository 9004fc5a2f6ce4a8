"""Run long work off the UI thread.

`Task` runs a plain function on a Python thread. The function takes keyword arguments `progress(done, total,
text)` and `cancelled()`; the Task (a QObject living on the UI thread) re-emits them as signals on the UI thread,
so slots never run concurrently with the UI.

The worker thread never calls into Qt: it puts what happened on a queue, and a timer of the Task's on the UI
thread emits it from there. Signals emitted from a Python thread (queued to the UI thread) crashed the studio
now and then with a segmentation fault while the UI thread ran Python at the same moment (twice in CI, in the
sweep view, PySide6 6.11.3); the queue leaves Qt one thread to deal with.

Why `threading.Thread` and not QThread + moveToThread: the work is plain Python (core never imports Qt), and
cancellation is a `threading.Event` the function polls.

PySide6 6.12.0 on Python 3.11 loses a reference to True/False/None on every signal emission (a process aborts
with "Fatal Python error: bool_dealloc" after about a thousand emissions); 6.11.3 and 6.10.1 do not.
"""
from __future__ import annotations

import queue
import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, Signal

POLL_MS = 10  # how often a running Task's timer hands the worker's news to the UI thread


class Task(QObject):
    """One function on one worker thread. Signals: progress(done, total, text), succeeded(result),
    failed(message), finished() (always, after succeeded or failed)."""

    progress = Signal(object, object, str)  # object: byte counts pass 2**31
    succeeded = Signal(object)
    failed = Signal(str)
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, parent: QObject | None = None, **kwargs: Any):
        super().__init__(parent)
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=getattr(fn, "__name__", "task"))
        self._news: queue.SimpleQueue = queue.SimpleQueue()  # (signal name, args) from the worker thread
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._deliver)
        self.destroyed.connect(self._cancel.set)  # the owner (a closed pane) is gone: nobody is listening
        self.result: Any = None
        self.error: str | None = None

    def start(self) -> "Task":
        self._timer.start()
        self._thread.start()
        return self

    def _deliver(self) -> None:
        """On the UI thread: emit what the worker reported, in order; the timer stops after `finished`."""
        while True:
            try:
                name, args = self._news.get_nowait()
            except queue.Empty:
                return
            if name == "finished":
                self._timer.stop()
            getattr(self, name).emit(*args)

    def _run(self) -> None:
        try:
            self.result = self._fn(*self._args, progress=self._report, cancelled=self._cancel.is_set,
                                   **self._kwargs)
        except Exception as exc:  # shown to the user; the traceback goes to stderr for developers
            traceback.print_exc()
            self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._news.put(("failed", (self.error,)))
        else:
            self._news.put(("succeeded", (self.result,)))
        finally:
            self._news.put(("finished", ()))

    def _report(self, done, total=0, text: str = "") -> None:
        self._news.put(("progress", (done, total, str(text))))

    def is_running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self) -> None:
        self._cancel.set()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, ms: int = 10_000) -> bool:
        if self._thread.ident is None:
            return True
        self._thread.join(ms / 1000)
        return not self._thread.is_alive()

    def cancel_and_wait(self, ms: int = 10_000) -> bool:
        self.cancel()
        return self.wait(ms)


def start_task(owner: QObject, fn: Callable[..., Any], *args: Any, on_progress=None, on_done=None,
               on_error=None, **kwargs: Any) -> Task:
    """Start `fn` on a thread with optional callbacks; the task is parented to `owner` so it lives long enough."""
    task = Task(fn, *args, parent=owner, **kwargs)
    if on_progress:
        task.progress.connect(on_progress)
    if on_done:
        task.succeeded.connect(on_done)
    if on_error:
        task.failed.connect(on_error)
    return task.start()
