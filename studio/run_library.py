"""The workspace's runs as records and folders, apart from their processes: clone a run's config for editing,
delete a run (and its folder), import a run folder trained elsewhere.

Nothing here starts, follows or signals a process; that is the run manager's (`studio.worker.run_manager`). A
live run that an import brings in is handed over through ``runImported``, which the run manager answers
(``RunManager.connect_context``) by following it.
"""
from __future__ import annotations

import json
import shutil
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.store import ACTIVE_STATUSES, RunStore, import_run_dir
from studio.threads import Task


class RunLibrary(QObject):
    runsChanged = Signal()
    runImported = Signal(str, str)  # run_id ("" on failure), error message ("" on success)
    cloned = Signal(dict)  # a run's config to edit (the Config pane opens it)

    def __init__(self, store: RunStore, runs_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.runs_dir = Path(runs_dir)
        self._pending: deque[Path] = deque()  # imports run one at a time, in the order asked (as the ingest
        self._importing: Task | None = None   # thread ran them): a sweep asking for 13 folders starts 1 thread

    def connect_context(self, context) -> None:
        """Forward this library's signals to the StudioContext."""
        self.runsChanged.connect(context.runsChanged)
        self.cloned.connect(context.configEditRequested)

    def clone(self, run_id: str) -> dict:
        """A copy of the run's config for editing (parent recorded for lineage); also sent out as ``cloned``."""
        run = self.store.get_run(run_id)
        if run is None:
            return {}
        config = json.loads(run.config_json or "{}")
        config.pop("run_dir", None)
        config.update(name=f"{run.name} (copy)", parent_run_id=run_id, n_gpus=run.n_gpus)
        self.cloned.emit(config)
        return config

    def delete(self, run_id: str, remove_files: bool = False) -> bool:
        """Forget a run that is not active; with ``remove_files`` also delete its folder under runs/."""
        run = self.store.get_run(run_id)
        if run is None or run.status in ACTIVE_STATUSES:
            return False
        self.store.delete_run(run_id)
        run_dir = Path(run.run_dir).resolve()
        if remove_files and run_dir.parent == self.runs_dir.resolve() and run_dir.is_dir():
            shutil.rmtree(run_dir, ignore_errors=True)
        self.runsChanged.emit()
        return True

    def import_run_dir(self, run_dir: Path) -> str:
        """Import on this thread (scripts, tests); the window uses ``import_run_dir_async``. Errors raise."""
        run_id = import_run_dir(self.store, Path(run_dir))
        self._on_imported((run_id, ""))
        return run_id

    def import_run_dir_async(self, run_dir: Path) -> None:
        """Import on a worker thread (a long events.jsonl must not freeze the window); ``runImported`` says how
        it went."""
        self._pending.append(Path(run_dir))
        if self._importing is None:
            self._next_import()

    def _next_import(self) -> None:
        if not self._pending:
            self._importing = None
            return
        task = self._importing = Task(self._import, self._pending.popleft(), parent=self)
        task.succeeded.connect(self._on_imported)
        task.finished.connect(self._next_import)
        task.start()

    def _import(self, run_dir: Path, progress, cancelled) -> tuple[str, str]:
        try:
            return import_run_dir(self.store, run_dir), ""
        except Exception as exc:  # noqa: BLE001 - told to the user, not raised into Qt's event loop
            return "", (str(exc) if isinstance(exc, (OSError, ValueError))
                        else f"{run_dir}: could not import ({type(exc).__name__}: {exc})")

    def _on_imported(self, outcome: tuple[str, str]) -> None:
        run_id, error = outcome
        if run_id:
            self.runsChanged.emit()
        self.runImported.emit(run_id, error)
