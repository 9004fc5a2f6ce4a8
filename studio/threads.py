"""Run long work off the UI thread.

`Task` runs a plain function on a Python thread. The function takes keyword arguments `progress(done, total,
text)` and `cancelled()`; the Task (a QObject living on the UI thread) re-emits them as signals, which Qt
queues to the UI thread because they are emitted from another thread, so slots never run concurrently with
the UI.

Why `threading.Thread` and not QThread + moveToThread: the work is plain Python (core never imports Qt),
cancellation is a `threading.Event` the function polls, and signals emitted from a Python thread are queued to
the receiver's thread exactly like a QThread's.

PySide6 6.12.0 on Python 3.11 loses a reference to True/False/None on every signal emission (a process aborts
with "Fatal Python error: bool_dealloc" after about a thousand emissions); 6.11.3 and 6.10.1 do not.
"""
from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal


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
        self.result: Any = None
        self.error: str | None = None

    def start(self) -> "Task":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._fn(*self._args, progress=self._report, cancelled=self._cancel.is_set,
                                   **self._kwargs)
        except Exception as exc:  # shown to the user; the traceback goes to stderr for developers
            traceback.print_exc()
            self.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._emit(self.failed, self.error)
        else:
            self._emit(self.succeeded, self.result)
        finally:
            self._emit(self.finished)

    def _emit(self, signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the owner (a closed pane) was deleted meanwhile: nobody is listening
            self._cancel.set()

    def _report(self, done, total=0, text: str = "") -> None:
        self._emit(self.progress, done, total, str(text))

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
