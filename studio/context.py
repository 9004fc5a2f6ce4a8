"""What every pane receives: the workspace, the run store, the run manager, the run library, the selected run and
app-wide signals.

Panes are built as ``Pane(context: StudioContext, parent=None)``. They talk to each other only through the
signals below (never by holding references to one another), so any pane may be missing or replaced. Who listens
to which signal is decided in one place, ``MainWindow._connect_signals`` / ``MainWindow._connect_pane``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from studio.run_library import RunLibrary

if TYPE_CHECKING:  # imported for type hints only: keeps `import studio.context` cheap
    from studio.store import RunStore
    from studio.worker import RunManager
    from studio.workspace import Workspace


class StudioContext(QObject):
    """Shared state of one studio window.

    Attributes:
        workspace: paths of the workspace folder (``root``, ``db_path``, ``runs_dir``, ``datasets_dir``,
            ``tokenizers_dir``, ``exports_dir``).
        store: the SQLite run store (runs, metrics, events, checkpoints, exports, datasets).
        runs: the run manager: ``launch(config, name=None, method=None, parent_run_id=None,
            init_checkpoint=None, n_gpus=None) -> run_id``, ``stop(run_id)``, ``kill(run_id)``, ``resume(run_id)``,
            and the other controls of a run's process (studio.worker.run_manager).
        library: the run library (studio.run_library), built here over the store: ``clone(run_id)``,
            ``delete(run_id, remove_files=False)``, ``import_run_dir_async(run_dir)`` (``runImported`` follows).
        selected_run_id: the run selected in the Runs pane (None before any), state every pane may read; a pane
            built later reads it instead of being told. Set it with ``select_run``.
    """

    # The list of runs or a run's status changed (launch, finish, delete, import).
    runsChanged = Signal()
    # One run's row changed (status, step, best loss): run_id.
    runUpdated = Signal(str)
    # New events of a run were stored: run_id, list of event dicts (schema v1). Live plots listen here.
    eventsIngested = Signal(str, list)
    # A run wrote a checkpoint: run_id, absolute checkpoint directory.
    checkpointAdded = Signal(str, str)
    # An export was written: absolute path of the exported file or folder.
    exportAdded = Signal(str)
    # The datasets or tokenizers in the workspace changed.
    datasetsChanged = Signal()
    # Any pane asks to start a training run with this config dict (the Config pane's "Start").
    # The dict is a core.config.TrainConfig as JSON ("method", "model", "init", "data", "optim", ...) plus
    # optional studio-only keys "name", "n_gpus", "parent_run_id", which are removed before the rest is
    # written to run_dir/config.json (with "run_dir" set) and passed to `python -m core.train --config`.
    launchRequested = Signal(dict)
    # Open this config in the Config pane for editing (clone-and-edit from the Runs pane).
    configEditRequested = Signal(dict)
    # ``selected_run_id`` changed (``select_run``): the new run_id.
    selectedRunChanged = Signal(str)
    # Switch the main window to a pane by its title ("Datasets", "Config", "Runs", "Curves", "Chat", "Export").
    showPaneRequested = Signal(str)
    # One line for the status bar.
    statusMessage = Signal(str)

    def __init__(self, workspace: "Workspace", store: "RunStore", runs: "RunManager",
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.store = store
        self.runs = runs
        self.library = RunLibrary(store, workspace.runs_dir, parent=self)
        self.library.connect_context(self)
        self._selected_run_id: str | None = None

    @property
    def selected_run_id(self) -> str | None:
        return self._selected_run_id

    def select_run(self, run_id: str | None) -> None:
        """Make ``run_id`` the selected run (Runs table, Curves overlay, Run menu); ``selectedRunChanged`` only
        when it changes, so a pane that answers the signal by selecting the same run ends the exchange."""
        run_id = run_id or None
        if run_id != self._selected_run_id:
            self._selected_run_id = run_id
            self.selectedRunChanged.emit(run_id or "")

    def request_launch(self, config: dict[str, Any]) -> None:
        """Start a run with ``config`` (same as emitting ``launchRequested``)."""
        self.launchRequested.emit(dict(config))
