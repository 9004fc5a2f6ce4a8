"""Runs pane: history table, start/stop/kill/resume/clone/delete, and a detail panel (lineage, checkpoints,
recent events, stderr tail). Thin widget over RunsPresenter."""
from __future__ import annotations

import html
import time

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QListWidget, QMessageBox,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QTextBrowser, QVBoxLayout,
                               QWidget)

from studio.panes.runs.tabs import RunViews
from studio.panes.runs.presenter import COLUMNS, RunsPresenter
from studio.tensorboard import TensorBoardServers
from studio.widgets.common import Deferred

STATUS_COLORS = {"running": "#1a7f37", "starting": "#1a7f37", "stopping": "#9a6700", "queued": "#6e7781",
                 "completed": "#0969da", "stopped": "#9a6700", "failed": "#cf222e", "interrupted": "#bc4c00"}
BUTTONS = (("start", "Start…"), ("stop", "Stop"), ("kill", "Kill"), ("resume", "Resume"), ("clone", "Clone && edit"),
           ("delete", "Delete"), ("tensorboard", "Open in TensorBoard"))
TENSORBOARD_TIP = ("Open this run's TensorBoard logs in the browser (a local TensorBoard server on 127.0.0.1). "
                   "Runs log them with log · tensorboard on (Config › Run).")


class RunsPane(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.presenter = RunsPresenter(context)
        self._detail_shown: tuple = (None, None, 0.0)
        self.refresh_soon = Deferred(self, self.refresh)

        self.buttons: dict[str, QPushButton] = {}
        bar = QHBoxLayout()
        for key, text in BUTTONS:
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, k=key: self._on_action(k))
            self.buttons[key] = button
            bar.addWidget(button)
        bar.addStretch(1)
        self.buttons["tensorboard"].setToolTip(TENSORBOARD_TIP)
        self.tensorboard = TensorBoardServers(self)  # one server per run folder, stopped when the studio quits
        self.tensorboard.ready.connect(self._tensorboard_ready)
        self.tensorboard.failed.connect(self._tensorboard_failed)
        self.message_box: QMessageBox | None = None

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._on_selection)

        self.title = QLabel("Select a run")
        self.title.setStyleSheet("font-weight: bold; font-size: 14px;")
        self.info = QTextBrowser()
        self.checkpoints = QListWidget()
        self.checkpoints.setToolTip("Checkpoints of this run (double-click copies the path to the status bar)")
        self.checkpoints.itemDoubleClicked.connect(lambda item: context.statusMessage.emit(item.toolTip()))
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.title)
        dl.addWidget(self.info, 3)
        dl.addWidget(QLabel("Checkpoints"))
        dl.addWidget(self.checkpoints, 1)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(detail)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        self.views = RunViews(context, splitter, STATUS_COLORS)  # History | Lineage | Compare
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.views)

        self.refresh()
        if context.selected_run_id:
            self.select_run(context.selected_run_id)

    # ---------------------------------------------------------------- render
    def selected_run_id(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def refresh(self) -> None:
        self.refresh_soon.cancel()
        selected = self.selected_run_id()
        self.table.blockSignals(True)
        rows = self.presenter.rows()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            self._fill_row(r, row)
        self.table.blockSignals(False)
        if selected:
            self.select_run(selected)
        self._update_buttons()
        self.views.refresh()

    def _fill_row(self, r: int, row) -> None:
        for c, text in enumerate(row.cells):
            item = QTableWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, row.run_id)
            if row.tooltip:
                item.setToolTip(row.tooltip)
            if c == 2:
                item.setForeground(QColor(STATUS_COLORS.get(row.status, "#24292f")))
            if c in (3, 4, 5):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(r, c, item)

    def refresh_row(self, run_id: str) -> None:
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == run_id:
                run = self.presenter.store.get_run(run_id)
                if run is None:
                    return
                self._fill_row(r, self.presenter.row(run))
                if run_id == self.selected_run_id():
                    # A live run updates 4x a second; the detail (six queries + the stderr tail) follows its
                    # status at once and its progress every 2 s, so the table stays smooth.
                    shown_id, shown_status, shown_at = self._detail_shown
                    if (shown_id, shown_status) != (run_id, run.status) or time.monotonic() - shown_at > 2.0:
                        self._show_detail(run_id)
                        self._update_buttons()
                return
        # A run we do not show yet: the table is refreshed in a later pass of the event loop, not inside the
        # launch's click (the same request as the window's on runsChanged: the two are one refresh).
        self.refresh_soon()

    def select_run(self, run_id: str) -> None:
        """Show ``run_id`` selected (the context's selected run; it is not announced again)."""
        self.views.select_run(run_id)
        if run_id == self.selected_run_id():
            return
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == run_id:
                self.table.blockSignals(True)
                self.table.selectRow(r)
                self.table.blockSignals(False)
                self._show_detail(run_id)
                self._update_buttons()
                return

    def _on_selection(self) -> None:
        run_id = self.selected_run_id()
        self._update_buttons()
        if run_id:
            self._show_detail(run_id)
            self.context.select_run(run_id)

    def _update_buttons(self) -> None:
        for key, allowed in self.presenter.allowed(self.selected_run_id()).items():
            self.buttons[key].setEnabled(allowed)

    def _show_detail(self, run_id: str) -> None:
        d = self.presenter.detail(run_id)
        if not d:
            return
        self._detail_shown = (run_id, d["summary"]["status"], time.monotonic())
        self.title.setText(d["title"])
        esc = html.escape
        parts = ["<table>"] + [f"<tr><td><b>{esc(k)}</b></td><td>{esc(str(v))}</td></tr>"
                               for k, v in d["summary"].items() if v]
        parts.append("</table><h4>Lineage</h4><ul>" + "".join(f"<li>{esc(x)}</li>" for x in d["lineage"]) + "</ul>")
        parts.append("<h4>Recent events</h4><pre>" + esc("\n".join(d["events"]) or "none yet") + "</pre>")
        if d["stderr_tail"]:
            parts.append("<h4>stderr.log</h4><pre>" + esc(d["stderr_tail"]) + "</pre>")
        parts.append("<h4>Config</h4><pre>" + esc(d["config"]) + "</pre>")
        scroll = self.info.verticalScrollBar().value()
        self.info.setHtml("".join(parts))
        self.info.verticalScrollBar().setValue(scroll)
        self.checkpoints.clear()
        for step, path in d["checkpoints"]:
            self.checkpoints.addItem(f"step {step}")
            self.checkpoints.item(self.checkpoints.count() - 1).setToolTip(path)

    # --------------------------------------------------------------- actions
    def _on_action(self, key: str) -> None:
        run_id = self.selected_run_id()
        if key == "start":
            self.presenter.start()
        elif run_id is None:
            return
        elif key == "delete":
            answer = QMessageBox.question(
                self, "Delete run", f"Forget run {run_id}?\n\nYes also deletes its folder (checkpoints included); "
                "No keeps the folder (File > Import run folder brings it back).",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel)
            if answer != QMessageBox.StandardButton.Cancel:
                self.presenter.delete(run_id, remove_files=answer == QMessageBox.StandardButton.Yes)
        elif key == "tensorboard":
            folder = self.presenter.tensorboard_dir(run_id)
            if folder is not None:
                self.context.statusMessage.emit(f"Starting TensorBoard for {run_id}…")
                self.tensorboard.open(folder)
        elif key == "kill":
            if QMessageBox.question(self, "Kill run", "Kill the run now? Progress since its last checkpoint is "
                                    "lost; Stop saves a checkpoint first.") == QMessageBox.StandardButton.Yes:
                self.presenter.kill(run_id)
        else:
            getattr(self.presenter, key)(run_id)

    def _tensorboard_ready(self, logdir: str, url: str) -> None:
        self.context.statusMessage.emit(f"TensorBoard for {logdir}: {url}")
        QDesktopServices.openUrl(QUrl(url))

    def _tensorboard_failed(self, logdir: str, message: str) -> None:
        # not modal: the failure arrives from a process signal, whatever the user is doing by then
        self.message_box = QMessageBox(QMessageBox.Icon.Warning, "Open in TensorBoard", message,
                                       QMessageBox.StandardButton.Ok, self)
        self.message_box.open()
