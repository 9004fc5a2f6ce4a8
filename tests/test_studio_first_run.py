"""First start: the window opens at once on the default workspace (no dialog before it), another folder is offered
in a banner, and the demo guide sits in a dock beside the panes instead of over them."""
from __future__ import annotations

import gc
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QDockWidget
import pytest


@pytest.fixture(autouse=True)
def _app_style_restored():
    """studio.app.main styles the whole application; later tests in this process expect it unstyled."""
    app = QApplication.instance() or QApplication([])
    style = app.style().name()
    yield
    app.setStyleSheet("")
    app.setStyle(style)
    gc.unfreeze()  # studio.app.open_window froze the heap (studio/heap.py); give it back to the collector


def test_first_start_opens_the_window_without_a_dialog_and_offers_another_workspace(qtbot, tmp_path, monkeypatch):
    import studio.app
    import studio.workspace

    remembered = []
    default = tmp_path / "MiniMindStudio"
    monkeypatch.setattr(studio.workspace, "resolve_workspace", lambda: (default, False))  # nothing chosen yet
    monkeypatch.setattr(studio.workspace, "remember_workspace", remembered.append)
    modal = []
    opened = []
    real_open = studio.app.open_window
    monkeypatch.setattr(studio.app, "open_window", lambda root, **kw: opened.append(real_open(root)) or opened[-1])
    monkeypatch.setattr(QApplication, "exec", lambda self: modal.append(QApplication.activeModalWidget()) or 0)

    assert studio.app.main(["--demo"]) == 0
    window = opened[0]
    qtbot.addWidget(window)
    assert modal == [None] and window.isVisible()
    assert window.context.workspace.root == default and remembered == [default]
    assert window.workspace_banner.isVisible() and str(default) in window.workspace_banner_text.text()
    dock = window.findChild(QDockWidget, "DemoGuideDock")
    assert dock is not None and dock.isVisible() and not dock.isFloating()
    assert window.dockWidgetArea(dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert not window._first_run.isWindow()  # a panel inside the dock, not a dialog over the panes
    assert not (dock.features() & QDockWidget.DockWidgetFeature.DockWidgetFloatable)
    switch = [a for a in window.menuBar().actions()[0].menu().actions() if a.text() == "&Switch workspace…"]
    assert switch
    window._first_run.close_btn.click()
    assert not dock.isVisible()
    window.show_first_run_guide()  # Help > Train the demo model (F1) brings it back
    assert dock.isVisible()
    window.close_policy = "keep"
    window.close()


def test_a_chosen_workspace_opens_without_the_banner(qtbot, tmp_path, monkeypatch):
    import studio.app
    import studio.workspace

    monkeypatch.setattr(studio.workspace, "resolve_workspace", lambda: (tmp_path / "ws", True))
    monkeypatch.setattr(studio.workspace, "remember_workspace", lambda root: None)
    opened = []
    real_open = studio.app.open_window
    monkeypatch.setattr(studio.app, "open_window", lambda root, **kw: opened.append(real_open(root)) or opened[-1])
    monkeypatch.setattr(QApplication, "exec", lambda self: 0)
    (tmp_path / "ws" / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "ws" / "runs" / "r1" / "events.jsonl").write_text("")
    assert studio.app.main([]) == 0
    window = opened[0]
    qtbot.addWidget(window)
    assert not window.workspace_banner.isVisible() and window.findChild(QDockWidget, "DemoGuideDock") is None
    assert Path(window.context.workspace.root) == tmp_path / "ws"
    window.close_policy = "keep"
    window.close()


def test_the_theme_follows_a_dark_system_palette(qtbot):
    from PySide6.QtGui import QColor, QPalette

    from studio.widgets.theme import COLORS, DARK, LIGHT, apply_theme, stylesheet

    app = QApplication.instance()
    light = app.palette()
    dark = QPalette(light)
    dark.setColor(QPalette.ColorRole.Window, QColor("#202124"))
    dark.setColor(QPalette.ColorRole.WindowText, QColor("#eeeeee"))
    try:
        app.setPalette(dark)  # offscreen reports no colour scheme: the palette decides
        apply_theme(app)
        assert COLORS == DARK and DARK["panel"] in stylesheet() and LIGHT["bg"] not in stylesheet()
    finally:
        app.setPalette(light)
        apply_theme(app)
    assert COLORS == LIGHT


def test_the_guide_s_bar_names_the_stage_its_share_belongs_to(qtbot, context):
    """The found bug: the bar showed "95 %" with SFT not started (the pretrain run's share). Each stage starts
    the bar from nothing and the bar says which stage it measures."""
    from studio.dialogs.first_run import STEPS, FirstRunDialog, bar_format

    assert bar_format(2, known_total=True) == f"Step 3 of {len(STEPS)}: Pretrain the tiny model · %p%"
    assert bar_format(3, known_total=False) == f"Step 4 of {len(STEPS)}: Fine-tune it for chat (SFT)"
    dialog = FirstRunDialog(context)
    qtbot.addWidget(dialog)
    p, bar = dialog.presenter, dialog.bar
    p.stepChanged.emit(2, "running", "queued")
    p.progress.emit(95, 100, "running · step 95/100")
    assert (bar.value(), bar.maximum()) == (95, 100) and bar.text() == "Step 3 of 5: Pretrain the tiny model · 95%"
    p.stepChanged.emit(2, "done", "run r1")
    p.stepChanged.emit(3, "running", "queued")  # SFT queued: nothing of it is done yet
    assert bar.value() == 0 and bar.text().startswith("Step 4 of 5: Fine-tune it for chat (SFT)")
    p.progress.emit(10, 200, "running · step 10/200")
    assert bar.text() == "Step 4 of 5: Fine-tune it for chat (SFT) · 5%"
    p.finished.emit(True, "ready")
    assert bar.text().startswith("All steps done")
