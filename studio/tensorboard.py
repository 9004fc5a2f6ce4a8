"""TensorBoard for a run's log folder: a `tensorboard` server on 127.0.0.1 as a child process, one per folder.

Started with the studio's own Python (`python -m tensorboard.main`), on port 0 so the system picks a free port
with no race; the server prints the address it bound, which is what `ready` announces (the Runs pane opens it
in the browser). A PyInstaller bundle has no Python to run `-m` with: it uses a `tensorboard` command on PATH.
Servers stop when the studio quits. The trainer writes the folders (core/train/trackers.py).
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QObject, QProcess, Signal

from studio.worker.command import is_frozen

HOST = "127.0.0.1"
URL = re.compile(r"(http://127\.0\.0\.1:\d+/)")
MISSING = ("TensorBoard is not installed in the studio's Python environment ({python}); install it with "
           "`{python} -m pip install tensorboard` and try again.")
NOT_BUNDLED = ("TensorBoard is not part of the studio's bundle and no `tensorboard` command is on PATH; install it "
               "(`pip install tensorboard`) and try again, or run `tensorboard --logdir {logdir}` yourself.")


def tensorboard_command(logdir: str | Path, python: str | None) -> list[str] | None:
    """The server's command line: this folder only, on 127.0.0.1, on a free port (0: the system picks one);
    without a Python (a bundle), the `tensorboard` command on PATH, or None when there is none."""
    args = ["--logdir", str(logdir), "--host", HOST, "--port", "0"]
    if python:
        return [python, "-m", "tensorboard.main", *args]
    script = shutil.which("tensorboard")
    return [script, *args] if script else None


class TensorBoardServers(QObject):
    """`open(logdir)` starts a server for the folder (or reuses the running one) and emits `ready(logdir, url)`
    once it serves, or `failed(logdir, message)` when it cannot start."""

    ready = Signal(str, str)
    failed = Signal(str, str)

    def __init__(self, parent: QObject | None = None, python: str | None = None) -> None:
        super().__init__(parent)
        self.python = python or (None if is_frozen() else sys.executable)
        self.processes: dict[str, QProcess] = {}
        self.urls: dict[str, str] = {}
        self._output: dict[str, str] = {}
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.stop_all)

    def open(self, logdir: str | Path) -> None:
        logdir = str(logdir)
        if logdir in self.urls:
            self.ready.emit(logdir, self.urls[logdir])
            return
        if logdir in self.processes:  # still starting: `ready` follows
            return
        command = tensorboard_command(logdir, self.python)
        if command is None:
            self.failed.emit(logdir, NOT_BUNDLED.format(logdir=logdir))
            return
        program, *args = command
        proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.readyReadStandardOutput.connect(lambda: self._read(logdir, proc))
        proc.finished.connect(lambda code, _status: self._finished(logdir, code))
        proc.errorOccurred.connect(lambda error: self._error(logdir, error))
        self.processes[logdir], self._output[logdir] = proc, ""
        proc.start(program, args)

    def _read(self, logdir: str, proc: QProcess) -> None:
        text = bytes(proc.readAllStandardOutput()).decode("utf-8", "replace")
        if logdir in self.urls:
            return
        self._output[logdir] = (self._output.get(logdir, "") + text)[-4000:]
        match = URL.search(self._output[logdir])
        if match:
            self.urls[logdir] = match.group(1)
            self.ready.emit(logdir, match.group(1))

    def _error(self, logdir: str, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._forget(logdir)
            self.failed.emit(logdir, f"TensorBoard could not be started with {self.python}: {error.name}")

    def _finished(self, logdir: str, code: int) -> None:
        served = logdir in self.urls
        output = self._output.get(logdir, "").strip()
        self._forget(logdir)
        if served:
            return
        if "No module named 'tensorboard" in output:
            self.failed.emit(logdir, MISSING.format(python=self.python))
            return
        tail = "\n".join(output.splitlines()[-5:])
        self.failed.emit(logdir, f"TensorBoard exited (code {code}) before serving {logdir}" +
                         (f":\n{tail}" if tail else ""))

    def _forget(self, logdir: str) -> None:
        self.processes.pop(logdir, None)
        self.urls.pop(logdir, None)
        self._output.pop(logdir, None)

    def stop(self, logdir: str | Path) -> None:
        """Stop the folder's server (SIGTERM, then SIGKILL after 5 s) and wait for it."""
        proc = self.processes.get(str(logdir))
        if proc is None:
            return
        proc.terminate()
        if not proc.waitForFinished(5000):
            proc.kill()
            proc.waitForFinished(5000)

    def stop_all(self) -> None:
        for logdir in list(self.processes):
            self.stop(logdir)
