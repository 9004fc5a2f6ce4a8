"""Entry point of the desktop app (``minimind-studio``, ``python app.py``).

Also the frozen bundle's trainer: ``<bundle> --worker --config FILE`` runs ``core.train`` in-process (a
PyInstaller ``sys.executable`` is the app, not Python). ``--self-test`` opens the window offscreen on a temporary
workspace, checks that the trainer entry starts (``<cmd> --help`` exits 0) and exits 0 — the packaging check.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
import tempfile
from pathlib import Path

from studio.worker.command import CLI_FLAG, EVAL_WORKER_FLAG, WORKER_FLAG


def run_worker(argv: list[str]) -> int:
    """Become the trainer: ``--worker [--nproc-per-node N] ARGS`` (torchrun re-launches this executable)."""
    if argv[:1] == ["--nproc-per-node"]:
        n, rest = argv[1], argv[2:]
        from torch.distributed.run import main as torchrun

        torchrun(["--standalone", f"--nproc_per_node={n}", "--no-python", sys.executable, WORKER_FLAG, *rest])
        return 0
    sys.argv = ["core.train", *argv]
    try:
        runpy.run_module("core.train", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


def build_context(root: Path, reconcile: bool = True):
    """Workspace folders, store (rebuilt if unreadable), run manager (re-attached to live runs)."""
    from studio.context import StudioContext
    from studio.store import open_store
    from studio.worker.run_manager import RunManager
    from studio.workspace import Workspace

    workspace = Workspace(Path(root).expanduser()).ensure()
    store = open_store(workspace.db_path, workspace.runs_dir)
    runs = RunManager(store, workspace.runs_dir)
    context = StudioContext(workspace, store, runs)
    runs.setParent(context)
    runs.connect_context(context)
    if reconcile:
        runs.reconcile()
    return context


def open_window(root: Path, probe_device: bool = True):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox

    from studio.main_window import MainWindow

    from studio.heap import HeapFreezer, share_the_gil

    context = build_context(root)
    window = MainWindow(context, probe_device=probe_device)
    # The app's process, not a window's concern, but it lives as long as the window: short full collections.
    window.heap_freezer = HeapFreezer(window)
    share_the_gil()
    message = context.store.recovery_message
    if message:
        QTimer.singleShot(0, lambda: QMessageBox.warning(window, "Studio database rebuilt", message))
    return window


def self_test() -> int:
    """Offscreen window on a throwaway workspace + the trainer entry answers --help. 0 = fine."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QEvent, QProcess
    from PySide6.QtWidgets import QApplication

    from studio.worker.command import trainer_base_command, trainer_environment

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="minimind-selftest-") as tmp:
        window = open_window(Path(tmp) / "workspace", probe_device=False)
        window.show()
        app.processEvents()
        tabs = [window.tabs.tabText(i) for i in range(window.tabs.count())]
        window.close_policy = "keep"
        window.close()
        window.context.store.close()
        window.deleteLater()  # its panes' timers must not outlive the temporary workspace
        context = window.context
        del window
        context.deleteLater()
        app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    argv = trainer_base_command() + ["--help"]
    proc = QProcess()
    env = proc.processEnvironment()
    for key, value in trainer_environment().items():
        env.insert(key, value)
    proc.setProcessEnvironment(env)
    proc.start(argv[0], argv[1:])
    finished = proc.waitForFinished(180_000)
    ok = finished and proc.exitStatus() == QProcess.ExitStatus.NormalExit and proc.exitCode() == 0
    print(f"window: ok ({', '.join(tabs)})")
    print(f"trainer entry: {'ok' if ok else 'FAILED'} ({' '.join(argv)})")
    if not ok:
        print(bytes(proc.readAllStandardError()).decode(errors="replace")[-2000:], file=sys.stderr)
    return 0 if ok else 1


def set_app_icon(app) -> None:
    """Window/task-bar icon from resources/icons (packaging/make_icons.py); in a bundle they sit in the same place."""
    from PySide6.QtGui import QIcon

    icons = Path(__file__).resolve().parents[1] / "resources" / "icons"
    icon = QIcon()
    for png in sorted(icons.glob("minimind-studio-*.png")):
        icon.addFile(str(png))
    if not icon.isNull():
        app.setWindowIcon(icon)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [WORKER_FLAG]:
        return run_worker(argv[1:])
    if argv[:1] == ["--parity-worker"]:  # the frozen app's llama.cpp parity child (core/export/parity.py)
        from core.export.parity_worker import main as parity_worker

        return parity_worker(argv[1:])
    if argv[:1] == ["--tool-worker"]:  # the frozen app's tool worker (core/tools/worker.py)
        from core.tools.worker import main as tool_worker

        return tool_worker(argv[1:])
    if argv[:1] == ["--quantize-worker"]:  # the frozen app's llama.cpp quantizer child (core/export/quantize.py)
        from core.export.quantize_worker import main as quantize_worker

        return quantize_worker(argv[1:])
    if argv[:1] == [CLI_FLAG]:  # the frozen app's `minimind` (Datasets › Token caches: `data prepare`)
        from core.cli import main as cli

        return cli(argv[1:])
    if argv[:1] == [EVAL_WORKER_FLAG]:  # the Evaluate pane's worker (core/eval/worker.py)
        from core.eval.worker import main as eval_worker

        return eval_worker(argv[1:])
    parser = argparse.ArgumentParser(prog="minimind-studio", description="MiniMind Studio desktop app")
    parser.add_argument("--workspace", help="workspace folder (default: remembered, else ~/MiniMindStudio)")
    parser.add_argument("--self-test", action="store_true", help="open offscreen, check the trainer starts, exit")
    parser.add_argument("--demo", action="store_true",
                        help="open on the built-in demo data and show the guided 'train the demo model' path")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test()

    from PySide6.QtWidgets import QApplication

    from studio.workspace import remember_workspace, resolve_workspace

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("MiniMind Studio")
    app.setOrganizationName("MiniMind")
    app.setDesktopFileName("minimind-studio")  # matches resources/minimind-studio.desktop (Wayland task bars)
    set_app_icon(app)
    from studio.widgets.theme import follow_system_theme

    follow_system_theme(app)  # light or dark as the system is, before any pane is built
    # No dialog before the window: a first start opens on the default folder and offers another in a banner.
    root, chosen = (Path(args.workspace), True) if args.workspace else resolve_workspace()
    remember_workspace(root)
    holder = {"window": open_window(root)}

    def switch(folder: str) -> None:  # File > New/Open workspace: runs keep training, the window re-opens
        old = holder["window"]
        old.close_policy = "keep"
        old.close()
        remember_workspace(Path(folder))
        holder["window"] = open_window(Path(folder))
        holder["window"].workspaceSwitchRequested.connect(switch)
        holder["window"].show()

    holder["window"].workspaceSwitchRequested.connect(switch)
    holder["window"].show()
    if not chosen:
        holder["window"].offer_workspace_choice()
    if args.demo or not any((root / "runs").glob("*/events.jsonl")):  # first run in this workspace: guide them
        holder["window"].load_demo_datasets()
        holder["window"].show_first_run_guide()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
