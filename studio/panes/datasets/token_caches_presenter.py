"""Logic of Datasets › Token caches: tokenize a file for training ahead of any run, list the caches, delete one.

The build runs outside the studio's process, as `minimind data prepare FILE ... --events` in a QProcess (the
bundle runs itself with --cli): its `prepare` events (JSON lines on stdout) feed the progress bar, and Cancel
sends it SIGTERM, on which it keeps the finished shards and ends (a later build, or a run, goes on from them).
It writes into the workspace's cache folder, the one the run manager gives every run that names none, so a run
started later on the same file and tokenizer finds the cache ready and starts training at once.

Listing and deleting are core's (`core.data.cache.list_caches`, `delete_cache`); they run on a worker thread
because `core.data` imports torch.
"""
from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from core.preparation import describe_prepare, prepare_fraction
from studio.threads import Task
from studio.worker.command import REPO_ROOT, cli_command, trainer_environment

KILL_AFTER_MS = 15_000  # a build that ignores SIGTERM this long is killed (its finished shards stay valid)


def prepare_arguments(path, tokenizer_dir, seq_len: int, cache_dir, kind: str | None = None) -> list[str]:
    """`minimind` arguments that tokenize `path` into `cache_dir` the way a run with these settings would."""
    args = ["data", "prepare", str(path), "--tokenizer", str(tokenizer_dir), "--seq-len", str(int(seq_len)),
            "--cache-dir", str(cache_dir), "--events"]
    return args + (["--kind", kind] if kind else [])


def _list(cache_dir: Path, progress, cancelled) -> list:
    from core.data.cache import list_caches

    return list_caches(cache_dir)


def _delete(entry: Path, progress, cancelled) -> str:
    from core.data.cache import delete_cache

    delete_cache(entry)
    return str(entry)


class TokenCachesPresenter(QObject):
    progress = Signal(int, int, str)          # per mille done, 1000, "preparing data 37 %, 2 min left (...)"
    runningChanged = Signal(bool)
    finished = Signal(str, str)               # "done" | "stopped" | "failed", a sentence for people
    cachesChanged = Signal(list)              # [core.data.cache.CacheEntry], newest first
    failed = Signal(str)

    def __init__(self, context, parent: QObject | None = None):
        super().__init__(parent)
        self.context = context
        self.entries: list = []
        self.last_event: dict | None = None
        self._process: QProcess | None = None
        self._buffer, self._stderr = b"", b""
        self._tasks: list[Task] = []

    @property
    def cache_dir(self) -> Path:
        return self.context.workspace.cache_dir

    @property
    def running(self) -> bool:
        return self._process is not None

    # ---- tokenize for training -------------------------------------------------------------------------------
    def prepare(self, path, tokenizer_dir, seq_len: int, kind: str | None = None) -> bool:
        """Start building the cache of `path` (False when one is being built already, or nothing is chosen)."""
        if self.running:
            self.failed.emit("a cache is being built already: wait for it or cancel it")
            return False
        if not path or not tokenizer_dir:
            self.failed.emit("choose a dataset file and a tokenizer to tokenize for training")
            return False
        self.last_event, self._buffer, self._stderr = None, b"", b""
        proc = self._process = QProcess(self)
        proc.setWorkingDirectory(str(REPO_ROOT))
        env = proc.processEnvironment()
        for key, value in trainer_environment().items():
            env.insert(key, value)
        proc.setProcessEnvironment(env)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        argv = cli_command(prepare_arguments(path, tokenizer_dir, seq_len, self.cache_dir, kind))
        proc.start(argv[0], argv[1:])
        self.runningChanged.emit(True)
        self.progress.emit(0, 1000, f"starting: tokenizing {Path(path).name}…")
        return True

    def cancel(self) -> None:
        """SIGTERM: the build keeps its finished shards and ends at its next batch; killed if it has not in 15 s."""
        proc = self._process
        if proc is not None:
            proc.terminate()
            QTimer.singleShot(KILL_AFTER_MS, lambda: self._process is proc and proc.kill())

    def _read_stdout(self) -> None:
        self._buffer += self._process.readAllStandardOutput().data()
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "prepare":
                self.handle(event)

    def _read_stderr(self) -> None:
        self._stderr = (self._stderr + self._process.readAllStandardError().data())[-4000:]

    def handle(self, event: dict) -> None:
        self.last_event = event
        self.progress.emit(int(1000 * prepare_fraction(event)), 1000, describe_prepare(event, detail=True))

    def _on_finished(self, code: int, _status) -> None:
        self._read_stdout()
        self._read_stderr()
        tail = [line for line in self._stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        state = (self.last_event or {}).get("state")
        if code == 0:
            status, message = "done", next((line for line in tail if line.startswith("cache: ")), "cache ready")
        elif state == "stopped":
            status, message = "stopped", describe_prepare(self.last_event) + "; the finished part is kept"
        else:
            status = "failed"
            message = " / ".join(tail[-3:]) or f"`minimind data prepare` exited with code {code}"
        self._process.deleteLater()
        self._process = None
        self.runningChanged.emit(False)
        if status == "done":
            self.progress.emit(1000, 1000, "data ready")
        self.finished.emit(status, message)
        self.refresh()

    # ---- the list ----------------------------------------------------------------------------------------------
    def refresh(self) -> Task:
        task = Task(_list, self.cache_dir, parent=self)
        task.succeeded.connect(self._on_listed)
        task.failed.connect(self.failed)
        return self._keep(task)

    def _on_listed(self, entries: list) -> None:
        self.entries = entries
        self.cachesChanged.emit(entries)

    def delete(self, entry) -> Task:
        """Delete one entry, finished or partial (refused while a process builds it)."""
        task = Task(_delete, Path(entry.path if hasattr(entry, "path") else entry), parent=self)
        task.succeeded.connect(lambda _path: self.refresh())
        task.failed.connect(self.failed)
        return self._keep(task)

    def _keep(self, task: Task) -> Task:
        self._tasks = [t for t in self._tasks if t.result is None and t.error is None] + [task]
        return task.start()

    def shutdown(self) -> None:
        """Closing the studio cancels a build in progress (what it finished stays for the next attempt)."""
        if self._process is not None:
            self._process.terminate()
            if not self._process.waitForFinished(KILL_AFTER_MS):
                self._process.kill()
        for task in self._tasks:
            task.cancel_and_wait()
