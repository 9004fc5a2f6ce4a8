"""The main window: one tab per pane, menus, shortcuts and a status bar (device, active run progress, ETA).

The window owns no logic beyond wiring: runs are started/stopped by ``context.runs`` (RunManager), and the
close question ("keep training or stop?") is answered by ``close_policy`` in tests and by a dialog otherwise.
Every connection between components is made in ``_connect_signals`` and ``_connect_pane`` (as qutebrowser's
``MainWindow._connect_signals`` does), so one screen shows who reacts to what.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Iterator

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QHBoxLayout, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QPushButton, QTabWidget, QVBoxLayout, QWidget)

from core.preparation import format_left
from studio.context import StudioContext
from studio.panes import PANES, PlaceholderPane, create_pane
from studio.panes.runs.presenter import run_progress
from studio.widgets.common import Deferred

ABOUT = ("<h3>MiniMind Studio</h3><p>Train, watch, chat with and export small MiniMind-style language models, "
         "fully offline.</p><p>Training runs in its own process: closing the studio never has to stop it.</p>")


GUIDE_WIDTH = 380  # px: the docked demo guide


# Each pane type's connections to the context, made by ``MainWindow._connect_pane`` when the pane is built:
# (context signal, the pane's slot as a dotted path, how). "direct" passes the signal's arguments on; "again" calls
# the slot without them (a refresh); "later" is a refresh deferred to the next pass of the event loop, once however
# often asked (``MainWindow._deferred``). A placeholder for a pane that failed to load has none.
PANE_CONNECTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "RunsPane": (("runsChanged", "refresh_soon", "direct"),  # deferred by the pane, shared with its row refresh
                 ("runUpdated", "refresh_row", "direct"), ("selectedRunChanged", "select_run", "direct")),
    "CurvesPane": (("runsChanged", "refresh_runs", "later"), ("selectedRunChanged", "show_run", "direct"),
                   ("eventsIngested", "presenter.on_events", "direct")),
    "ConfigPane": (("runsChanged", "refresh_checkpoints", "later"),
                   ("checkpointAdded", "refresh_checkpoints", "again")),
    "ChatPane": (("runsChanged", "presenter.refresh_models", "later"),
                 ("checkpointAdded", "presenter.refresh_models", "again"),
                 ("exportAdded", "presenter.refresh_models", "again")),
    "ExportPane": (("runsChanged", "presenter.refresh_sources", "later"),
                   ("checkpointAdded", "presenter.refresh_sources", "again")),
    "EvaluatePane": (("runsChanged", "presenter.refresh_sources", "later"),
                     ("checkpointAdded", "presenter.refresh_sources", "again"),
                     ("exportAdded", "presenter.refresh_sources", "again")),
    "DatasetsPane": (("datasetsChanged", "refresh_workspace", "direct"),),
    # the first-run guide, docked (Help > Train the demo model); its steps reach the window in show_first_run_guide
    "FirstRunDialog": (("runsChanged", "presenter.check_runs", "later"),
                       ("runUpdated", "presenter.check_runs", "again")),
}


def _without_arguments(slot: Callable[[], object]) -> Callable[..., object]:
    return lambda *_args: slot()


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class LazyPanes(Mapping):
    """``window.panes``: title -> pane, each built on first use (its tab shown, or looked up here).

    Building every pane up front cost ~2.8 s of a 6.9 s cold start (their imports: pyqtgraph, pydantic models);
    a pane nobody opens now costs nothing, and the window paints as soon as the first tab is built."""

    def __init__(self, titles: list[str], build: Callable[[str], QWidget]) -> None:
        self._titles, self._build, self._built = list(titles), build, {}

    def __getitem__(self, title: str) -> QWidget:
        if title not in self._titles:
            raise KeyError(title)
        if title not in self._built:
            self._built[title] = self._build(title)
        return self._built[title]

    def __iter__(self) -> Iterator[str]:
        return iter(self._titles)

    def __len__(self) -> int:
        return len(self._titles)

    def is_built(self, title: str) -> bool:
        return title in self._built


def initial_size(width: int = 1280, height: int = 820) -> tuple[int, int]:
    """The window's first size: 1280 x 820, or less on a screen that has less room (a 1280 x 800 display must
    show the whole window, its status bar included)."""
    screen = QGuiApplication.primaryScreen()
    if screen is None or QGuiApplication.platformName() == "offscreen":  # no real screen (its fake one is 800x600)
        return width, height
    room = screen.availableGeometry()
    return min(width, room.width()), min(height, room.height())


class MainWindow(QMainWindow):
    # The user picked another workspace folder (File > New/Switch workspace); the app re-opens on it.
    workspaceSwitchRequested = Signal(str)
    _deviceProbed = Signal(str)  # from the probe thread (queued to the UI thread)

    def __init__(self, context: StudioContext, probe_device: bool = True, parent: QWidget | None = None,
                 lazy_panes: bool = True) -> None:
        super().__init__(parent)
        self.context = context
        self.close_policy = "ask"  # "ask" | "keep" | "stop": what closing does to active runs
        self.setWindowTitle(f"MiniMind Studio — {context.workspace.root}")
        self.resize(*initial_size())

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self._pane_specs = {title: (module, cls) for title, module, cls in PANES}
        self._hosts: dict[str, QWidget] = {}
        for title in self._pane_specs:  # an empty host per tab; the pane goes in when first needed
            host = self._hosts[title] = QWidget()
            QVBoxLayout(host).setContentsMargins(0, 0, 0, 0)
            self.tabs.addTab(host, title)
        self.panes = LazyPanes(list(self._pane_specs), self._build_pane)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        self.workspace_banner = self._build_workspace_banner()
        column.addWidget(self.workspace_banner)
        column.addWidget(self.tabs)
        self.setCentralWidget(central)

        self._build_menus()
        self._build_status_bar()
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(1000)
        self._first_run = None
        self._guide_dock: QDockWidget | None = None
        self._known_runs = {run.id for run in context.store.list_runs()}
        self._connect_signals()
        if self.tabs.count():
            self.panes.get(self.tabs.tabText(self.tabs.currentIndex()))
        if not lazy_panes:  # every pane at once (what the window did before; bench.ui_stall compares)
            for title in self.panes:
                self.panes.get(title)
        self._progress_timer.start()
        active = context.runs.active_run_id()
        if active and not context.selected_run_id:  # re-opened while a run trains: Runs and Curves show it
            context.select_run(active)
        if probe_device:
            QTimer.singleShot(0, self._probe_device)
        else:
            from studio.device_info import cpu_info

            self.device_label.setText(cpu_info().summary())

    # ----------------------------------------------------------------- wiring
    def _connect_signals(self) -> None:
        """Every connection between the window, the context and the run manager; the panes' are made by
        ``_connect_pane`` when each is built. (The run manager's own signals reach the context through
        ``RunManager.connect_context``, which ``studio.app.build_context`` calls.) Connections inside one widget,
        a button to its own pane's slot, stay in that widget."""
        context = self.context
        self.tabs.currentChanged.connect(lambda i: self.panes.get(self.tabs.tabText(i)))
        context.showPaneRequested.connect(self.show_pane)
        context.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 8000))
        context.configEditRequested.connect(self._on_config_edit)
        context.runsChanged.connect(self.refresh_progress)  # status changes at once; progress once a second
        context.runsChanged.connect(self._deferred(self._select_launched_run))
        context.library.runImported.connect(self._on_run_imported)
        self._progress_timer.timeout.connect(self.refresh_progress)
        self._deviceProbed.connect(self.device_label.setText)

    def _deferred(self, slot: Callable[[], object]) -> Deferred:
        """``slot`` as its own event, later. A run change (launch, start, finish) reaches eight slots that each
        read the store and redraw a list; run in one dispatch they held the UI thread 30-45 ms
        (bench.ui_stall: a launch with every pane built), more with many runs."""
        return Deferred(self, slot)

    def _connect_pane(self, pane: QWidget) -> None:
        """A pane's connections to the context (``PANE_CONNECTIONS``, by its type), made once when the pane is
        built. A pane built after a run was selected reads ``context.selected_run_id`` itself; nothing is replayed
        to it."""
        for signal, path, how in PANE_CONNECTIONS.get(type(pane).__name__, ()):
            slot = pane
            for name in path.split("."):
                slot = getattr(slot, name)
            if how == "later":
                slot = self._deferred(slot)
            elif how == "again":
                slot = _without_arguments(slot)
            getattr(self.context, signal).connect(slot)

    # ----------------------------------------------------------------- set-up
    def _build_pane(self, title: str) -> QWidget:
        module, cls = self._pane_specs[title]
        host = self._hosts[title]
        pane = create_pane(title, module, cls, self.context, host)
        host.layout().addWidget(pane)
        self._connect_pane(pane)
        return pane

    def _on_config_edit(self, config: dict) -> None:
        pane = self.panes.get("Config")
        if not isinstance(pane, PlaceholderPane):
            pane.set_config(config)
        self.show_pane("Config")

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&New workspace…", self.new_workspace, QKeySequence.StandardKey.New)
        self._action(file_menu, "&Switch workspace…", self.open_workspace, QKeySequence.StandardKey.Open,
                     "Open another workspace folder (remembered for the next start)")
        self._action(file_menu, "&Import run folder…", self.import_run_dir, "Ctrl+I",
                     "Add a run trained from the command line (a folder with events.jsonl)")
        self._action(file_menu, "Se&ttings…", self.open_settings, QKeySequence.StandardKey.Preferences,
                     "Launch targets: this machine, Slurm or SkyPilot (docs/cluster.md)")
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        run_menu = bar.addMenu("&Run")
        self.start_action = self._action(run_menu, "&Start run", self.start_run, "Ctrl+R",
                                         "Start a run with the config in the Config pane")
        self.stop_action = self._action(run_menu, "S&top run", self.stop_run, "Ctrl+.",
                                        "Stop the selected run gracefully (it saves a checkpoint)")
        self.resume_action = self._action(run_menu, "&Resume run", self.resume_run, "Ctrl+Shift+R",
                                          "Continue the selected run from its last checkpoint")

        view_menu = bar.addMenu("&View")
        for i, (title, _m, _c) in enumerate(PANES):
            self._action(view_menu, title, lambda _=False, t=title: self.show_pane(t), f"Ctrl+{i + 1}")

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Train the demo model…", self.show_first_run_guide, "F1",
                     "Guided path: demo data, tokenizer, pretrain then SFT of the tiny preset, then chat")
        self._action(help_menu, "&About MiniMind Studio", self.about)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.run_label = QLabel("No active run")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.eta_label = QLabel("")
        self.device_label = QLabel("Device: …")
        for widget in (self.run_label, self.progress, self.eta_label):
            bar.addPermanentWidget(widget)
        bar.addPermanentWidget(self.device_label)

    def _probe_device(self) -> None:
        """Off the UI thread: NVML or nvidia-smi can take a second (never torch.cuda, which would hold a CUDA context
        in the studio for as long as it runs: studio.device_info). The same thread then warms the chat
        template."""
        import threading

        from studio.device_info import probe_device

        def probe_then_warm() -> None:
            self._deviceProbed.emit(probe_device().summary())
            # The chat template's first compile (jinja2's lazy imports, then Python's compile(), which holds
            # the GIL throughout) blocked the UI thread ~30 ms when it came with the first chat reply
            # (bench.ui_stall, chat phase of a fresh process); done here, it is cached before anyone chats.
            from core.tokenizer.chat_template import CHAT_TEMPLATE, compile_template

            compile_template(CHAT_TEMPLATE)

        threading.Thread(target=probe_then_warm, daemon=True, name="device-probe").start()

    # ---------------------------------------------------------------- actions
    def show_first_run_guide(self) -> None:
        """The guided demo path (studio/dialogs/first_run.py) in a side dock: beside the panes, never over them,
        so the plots it produces stay in view. Closing the dock hides it; F1 brings it back."""
        try:
            from studio.dialogs.first_run import FirstRunDialog
        except ImportError as exc:
            self.statusBar().showMessage(f"The guided demo is not available: {exc}", 8000)
            return
        if self._first_run is None:
            self._first_run = FirstRunDialog(self.context)
            self._first_run.setMinimumWidth(0)  # the dock decides its width
            self._connect_pane(self._first_run)
            self._first_run.presenter.stepChanged.connect(self._on_guide_step)
            dock = self._guide_dock = QDockWidget("Train the demo model", self)
            dock.setObjectName("DemoGuideDock")
            # Not floatable: a floating guide would cover the panes again.
            dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable |
                             QDockWidget.DockWidgetFeature.DockWidgetMovable)
            dock.setWidget(self._first_run)  # reparented: a plain child widget now, no dialog window
            self._first_run.close_btn.clicked.connect(dock.hide)
            self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self._first_run.show()
        self._guide_dock.show()
        self._guide_dock.raise_()
        # Once laid out (a size given before is overridden by the guide's long paths): a third of a 1280 screen.
        QTimer.singleShot(0, lambda: self.resizeDocks([self._guide_dock], [GUIDE_WIDTH], Qt.Orientation.Horizontal))

    def _on_guide_step(self, _step: int, state: str, detail: str) -> None:
        """The guide queued a training run: show Curves, where that run now plots (it is selected on launch)."""
        if state == "running" and detail == "queued":
            self.show_pane("Curves")

    def _build_workspace_banner(self) -> QWidget:
        """First start: the default workspace is already open; another folder is one click away (hidden
        unless ``offer_workspace_choice``)."""
        from studio.widgets.common import label

        banner = QWidget()
        banner.setObjectName("WorkspaceBanner")
        row = QHBoxLayout(banner)
        row.setContentsMargins(8, 4, 8, 4)
        self.workspace_banner_text = label("", "banner")
        choose = QPushButton("Choose another folder…")
        choose.clicked.connect(self.open_workspace)
        keep = QPushButton("Keep this folder")
        keep.clicked.connect(banner.hide)
        row.addWidget(self.workspace_banner_text, 1)
        row.addWidget(choose)
        row.addWidget(keep)
        banner.hide()
        return banner

    def offer_workspace_choice(self) -> None:
        """Show the banner offering another workspace folder (first start, nothing chosen yet)."""
        self.workspace_banner_text.setText(
            f"Your datasets, tokenizers, runs and exports go to {self.context.workspace.root}. "
            "Another folder? (Also File › Switch workspace.)")
        self.workspace_banner.show()

    def _select_launched_run(self) -> None:
        """A run that just appeared queued or live (launched here, by the demo guide or a clone) becomes the
        selected run, so Runs, Curves and the Run menu follow it without a click. This runs deferred, after the
        launch: a run that failed to start is already ``failed`` then, and is selected too, to show why."""
        runs = self.context.store.list_runs()
        new = [run for run in runs if run.id not in self._known_runs
               and run.status in ("queued", "starting", "running", "failed")]
        self._known_runs = {run.id for run in runs}
        if new:
            self.context.select_run(max(new, key=lambda run: run.created_at or 0).id)

    def load_demo_datasets(self) -> None:
        """Register the built-in demo datasets (resources/demo) in the Datasets pane and show them."""
        demo = Path(__file__).resolve().parents[1] / "resources" / "demo"
        pane = self.panes.get("Datasets")
        files = sorted(demo.glob("*.jsonl"))
        if pane is not None and hasattr(pane, "presenter") and files:
            pane.presenter.add_paths(files)
            if pane.file_list.count():
                pane.file_list.setCurrentRow(0)
        self.show_pane("Datasets")

    def show_pane(self, title: str) -> None:
        if title in self._hosts:
            self.panes.get(title)
            self.tabs.setCurrentWidget(self._hosts[title])

    def start_run(self) -> None:
        config_pane = self.panes.get("Config")
        get_config = getattr(config_pane, "current_config", None)
        if callable(get_config):
            config = get_config()
            if config:
                self.context.request_launch(config)
                return
        self.show_pane("Config")
        self.statusBar().showMessage("Fill in a config in the Config pane, then start it.", 8000)

    def stop_run(self) -> None:
        if self.context.selected_run_id:
            self.context.runs.stop(self.context.selected_run_id)

    def resume_run(self) -> None:
        if self.context.selected_run_id:
            self.context.runs.resume(self.context.selected_run_id)

    def open_settings(self) -> None:
        from studio.dialogs.settings import SettingsDialog

        SettingsDialog(self.context.workspace.targets_path, self).exec()

    def import_run_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a run folder (with events.jsonl)",
                                                  str(self.context.workspace.runs_dir))
        if folder:
            # Read and stored on a worker thread: a long events.jsonl must not freeze the window.
            self.statusBar().showMessage(f"Importing {folder}…")
            self.context.library.import_run_dir_async(Path(folder))

    def _on_run_imported(self, run_id: str, error: str) -> None:
        if error:
            self.statusBar().clearMessage()
            QMessageBox.warning(self, "Import run folder", error)
        else:
            self.statusBar().showMessage(f"Imported run {run_id}", 8000)

    def _choose_workspace(self, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, str(self.context.workspace.root.parent))
        if folder:
            self.workspaceSwitchRequested.emit(folder)

    def new_workspace(self) -> None:
        self._choose_workspace("New workspace: choose an empty folder")

    def open_workspace(self) -> None:
        self._choose_workspace("Switch workspace: choose a folder")

    def about(self) -> None:
        QMessageBox.about(self, "About MiniMind Studio", ABOUT)

    # ------------------------------------------------------------- progress
    def refresh_progress(self) -> None:
        runs = self.context.runs
        active = runs.active_run_id()
        if active is None:
            self.run_label.setText("No active run")
            self.progress.hide()
            self.eta_label.setText("")
            return
        view = run_progress(self.context.store, runs, active)  # preparing data, or training
        self.run_label.setText(view.label)
        self.progress.show()
        self.progress.setRange(0, view.maximum)
        self.progress.setValue(view.value)
        self.progress.setFormat(view.text)
        self.eta_label.setText(format_left(view.eta_s) if view.preparing else f"ETA {format_duration(view.eta_s)}")

    # ------------------------------------------------------------------ close
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        runs = self.context.runs
        active = runs.live_run_ids()
        policy = self.close_policy
        if active and policy == "ask":
            box = QMessageBox(self)
            box.setIcon(QMessageBox.Icon.Question)
            box.setWindowTitle("Training is running")
            box.setText(f"{len(active)} run(s) are training. Training runs in its own process and can go on "
                        "without the studio; reopen the studio later to follow it.")
            keep = box.addButton("Keep training", QMessageBox.ButtonRole.AcceptRole)
            stop = box.addButton("Stop (save checkpoint)", QMessageBox.ButtonRole.DestructiveRole)
            box.addButton(QMessageBox.StandardButton.Cancel)
            box.setDefaultButton(keep)
            box.exec()
            clicked = box.clickedButton()
            policy = "keep" if clicked is keep else "stop" if clicked is stop else "cancel"
        if policy == "cancel":
            event.ignore()
            return
        if active and policy == "stop":
            for run_id in active:
                runs.stop(run_id)
        runs.shutdown()  # flush pending events; never kills a run
        self._progress_timer.stop()
        event.accept()
