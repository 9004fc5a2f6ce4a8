"""Evaluate pane: models × tasks in a worker process, then a comparison table, a chart and per-item details.

Left: the models (checkpoints and GGUFs) and tasks to run (built-in benchmark sets, benchmark files, tool use),
the settings, Run / Cancel and the progress. Right: the comparison table (a row per model, a column per task:
accuracy, its 95 % interval, the share of items seen in training, ⚠ when flagged), bars per task across models
(with the intervals) or a radar like MiniMind's README when there are three tasks or more, and below them the
items of the clicked cell: the question, each option's score, the choice and whether it was right (for tool
use: the calls and the answer; for rl-signal: how many sampled answers were right, and whether an RL group could
learn from the case). Export writes the results as CSV or the table as Markdown.
"""
from __future__ import annotations

import html
import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QSpinBox, QSplitter, QTableWidget,
                               QTableWidgetItem, QTabWidget, QTextBrowser, QVBoxLayout, QWidget)

from studio.panes.curves.view import PALETTE
from studio.panes.evaluate.presenter import EvaluatePresenter, format_cell, task_label
from studio.widgets.common import banner, label, primary_button, set_banner
from studio.widgets.theme import COLORS, pane_style


def checked_data(widget: QListWidget) -> list[str]:
    return [widget.item(i).data(Qt.ItemDataRole.UserRole) for i in range(widget.count())
            if widget.item(i).checkState() == Qt.CheckState.Checked]


def add_checkable(widget: QListWidget, text: str, data: str, checked: bool = False) -> None:
    item = QListWidgetItem(text)
    item.setData(Qt.ItemDataRole.UserRole, data)
    item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
    item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
    widget.addItem(item)


def details_html(items: list[dict]) -> str:
    """One block per item: question, options with their scores (the gold one marked), right or wrong."""
    if not items:
        return f"<p style='color:{COLORS['muted']}'>Click a cell of the table to see its items.</p>"
    blocks = []
    for n, it in enumerate(items, 1):
        mark = "✔ right" if it.get("correct") else "✘ wrong"
        if "solved" in it:  # rl-signal: how often the sampled answers were right, and whether RL could learn
            mark = (f"right in {it['solved']} of {it['samples']} sampled answers · "
                    + ("signal: RL can learn from it" if it.get("correct") else "no signal: all alike"))
        lines = [f"<p><b>{n}. {html.escape(str(it.get('question', '')))}</b> — {mark}"
                 + (" · seen in training" if it.get("contaminated") else "") + "</p><ul>"]
        for i, opt in enumerate(it.get("options") or []):
            tags = (" ← gold" if i == it.get("gold") else "") + (" ← chosen" if i == it.get("chosen") else "")
            lines.append(f"<li>{html.escape(str(opt['text']))}: {opt['score']:.3f}{tags}</li>")
        for call in it.get("calls") or []:
            lines.append(f"<li>call {html.escape(call['name'])}({html.escape(str(call['arguments']))})</li>")
        if it.get("calls") is not None and not it.get("options"):
            lines.append(f"<li>answer: {html.escape(it.get('answer') or '(none)')}"
                         f" (expected {html.escape(', '.join(map(str, it.get('expected') or [])))})</li>")
        blocks.append("".join(lines) + "</ul>")
    return "".join(blocks)


class EvaluatePane(QWidget):
    def __init__(self, context, parent: QWidget | None = None):
        super().__init__(parent)
        pane_style(self)
        self.context = context
        self.presenter = EvaluatePresenter(context, self)
        self._cells: list[tuple[str, str]] = []  # (model_path, task) per column of the current table
        root = QHBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self._build_setup())
        split.addWidget(self._build_views())
        split.setStretchFactor(1, 3)
        root.addWidget(split)
        p = self.presenter
        p.sourcesChanged.connect(self._show_sources)
        p.tasksChanged.connect(self._show_tasks)
        p.resultsChanged.connect(self.refresh_results)
        p.progress.connect(self._show_progress)
        p.runningChanged.connect(self._show_running)
        p.errorRaised.connect(lambda text: set_banner(self.notice, text))
        self._show_tasks(p.tasks)
        p.refresh_sources()
        self.refresh_results()

    # ---- building ----------------------------------------------------------------------------------------
    def _build_setup(self) -> QWidget:
        box = QGroupBox("Run an evaluation")
        v = QVBoxLayout(box)
        v.addWidget(label("Models"))
        self.models = QListWidget()
        v.addWidget(self.models, 2)
        v.addWidget(label("Tasks"))
        self.task_list = QListWidget()
        v.addWidget(self.task_list, 1)
        add_file = QPushButton("Add benchmark file…")
        add_file.clicked.connect(self._choose_task_file)
        v.addWidget(add_file)
        form = QFormLayout()
        self.k_shot, self.limit, self.max_new, self.samples = QSpinBox(), QSpinBox(), QSpinBox(), QSpinBox()
        for spin, (lo, hi, value, tip) in zip((self.k_shot, self.limit, self.max_new, self.samples), (
                (0, 25, 0, "solved examples before each question"), (0, 100000, 50, "items per task (0: all)"),
                (8, 4096, 128, "tokens per tool-use answer"),
                (2, 64, 8, "rl-signal: sampled answers per case at temperature 1.0, as an RL group's rollouts"))):
            spin.setRange(lo, hi)
            spin.setValue(value)
            spin.setToolTip(tip)
        form.addRow("k-shot", self.k_shot)
        form.addRow("Items per task", self.limit)
        form.addRow("Tool-use tokens", self.max_new)
        form.addRow("RL-signal samples", self.samples)
        v.addLayout(form)
        row = QHBoxLayout()
        self.run_btn, self.cancel_btn = primary_button("Run"), QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.run_selected)
        self.cancel_btn.clicked.connect(self.presenter.cancel)
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        v.addLayout(row)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setFormat("idle")
        v.addWidget(self.bar)
        return box

    def _build_views(self) -> QWidget:
        host = QWidget()
        v = QVBoxLayout(host)
        v.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(label("Evaluate", "title"), 1)
        for text, suffix in (("Export CSV…", "csv"), ("Export Markdown…", "md")):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, s=suffix: self._export(s))
            top.addWidget(button)
        v.addLayout(top)
        self.notice = banner()
        v.addWidget(self.notice)
        self.table = QTableWidget()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.cellClicked.connect(self.show_cell)
        self.charts = QTabWidget()
        self.bars = pg.PlotWidget()
        self.bars.setMenuEnabled(False)
        self.bars.setYRange(0, 1)
        self.radar = pg.PlotWidget()
        self.radar.setMenuEnabled(False)
        self.radar.setAspectLocked(True)
        self.radar.hideAxis("left")
        self.radar.hideAxis("bottom")
        self.charts.addTab(self.bars, "Bars")
        self.charts.addTab(self.radar, "Radar")
        self.details = QTextBrowser()
        split = QSplitter(Qt.Orientation.Vertical)
        for w in (self.table, self.charts, self.details):
            split.addWidget(w)
        v.addWidget(split, 1)
        return host

    # ---- setup -------------------------------------------------------------------------------------------
    def _show_sources(self, sources: list) -> None:
        keep = set(checked_data(self.models))
        self.models.clear()
        for s in sources:
            add_checkable(self.models, s.label, s.path, s.path in keep)

    def _show_tasks(self, tasks: list) -> None:
        keep = set(checked_data(self.task_list))
        self.task_list.clear()
        for t in tasks:
            add_checkable(self.task_list, task_label(t), t, t in keep)

    def _choose_task_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Benchmark file (CSV / JSONL)", "",
                                              "Benchmarks (*.csv *.jsonl *.json);;All files (*)")
        if path:
            self.presenter.add_task(path)

    def settings(self) -> dict:
        return {"k_shot": self.k_shot.value(), "limit": self.limit.value(), "max_new_tokens": self.max_new.value(),
                "samples": self.samples.value()}

    def run_selected(self) -> None:
        models, tasks = checked_data(self.models), checked_data(self.task_list)
        if not models or not tasks:
            set_banner(self.notice, "Tick at least one model and one task.")
            return
        set_banner(self.notice, "")
        self.presenter.start(models, tasks, self.settings())

    def _show_progress(self, done: int, total: int, text: str) -> None:
        self.bar.setRange(0, total)
        self.bar.setValue(done)
        self.bar.setFormat(text)

    def _show_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _export(self, suffix: str) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export results", f"evaluation.{suffix}", f"*.{suffix}")
        if path:
            self.presenter.export(path)

    # ---- views -------------------------------------------------------------------------------------------
    def refresh_results(self) -> None:
        models, tasks, cells = self.presenter.comparison()
        self.table.clear()
        self.table.setRowCount(len(models))
        self.table.setColumnCount(len(tasks))
        self.table.setHorizontalHeaderLabels([task_label(t) for t in tasks])
        self.table.setVerticalHeaderLabels([label_ for _, label_ in models])
        self._rows, self._columns = [path for path, _ in models], tasks
        for r, (path, _label) in enumerate(models):
            for c, task in enumerate(tasks):
                row = cells.get((path, task))
                item = QTableWidgetItem(format_cell(row))
                if row and row.get("flagged"):
                    item.setForeground(pg.mkColor(COLORS["bad"]))
                    item.setToolTip("A large share of this benchmark's items occur in the training data.")
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self._draw_bars(models, tasks, cells)
        self._draw_radar(models, tasks, cells)

    def show_cell(self, row: int, column: int) -> None:
        if 0 <= row < len(self._rows) and 0 <= column < len(self._columns):
            self.details.setHtml(details_html(self.presenter.details(self._rows[row], self._columns[column])))

    def _draw_bars(self, models, tasks, cells) -> None:
        """A group per task, a bar per model, its 95 % interval as an error bar."""
        self.bars.clear()
        width = 0.8 / max(1, len(models))
        for m, (path, _label) in enumerate(models):
            rows = [(t, cells[(path, task)]) for t, task in enumerate(tasks) if (path, task) in cells]
            if not rows:
                continue
            x = np.array([t - 0.4 + width * (m + 0.5) for t, _ in rows])
            acc = np.array([r["accuracy"] for _, r in rows])
            color = PALETTE[m % len(PALETTE)]
            self.bars.addItem(pg.BarGraphItem(x=x, height=acc, width=width * 0.9, brush=color))
            low = np.array([r["accuracy"] - (r["ci_low"] if r["ci_low"] is not None else r["accuracy"]) for _, r in rows])
            high = np.array([(r["ci_high"] if r["ci_high"] is not None else r["accuracy"]) - r["accuracy"]
                             for _, r in rows])
            self.bars.addItem(pg.ErrorBarItem(x=x, y=acc, top=high, bottom=low, beam=width * 0.3))
        self.bars.getAxis("bottom").setTicks([[(t, task_label(task)) for t, task in enumerate(tasks)]])
        self.bars.setXRange(-0.6, max(0.6, len(tasks) - 0.4))

    def _draw_radar(self, models, tasks, cells) -> None:
        """Accuracy on spokes, one polygon per model (needs three tasks or more)."""
        self.radar.clear()
        if len(tasks) < 3:
            self.radar.addItem(pg.TextItem("A radar needs three tasks or more."))
            return
        angles = [math.pi / 2 - 2 * math.pi * t / len(tasks) for t in range(len(tasks))]
        grid = pg.mkPen(COLORS["border"])
        for level in (0.25, 0.5, 0.75, 1.0):
            ring = [(level * math.cos(a), level * math.sin(a)) for a in angles + angles[:1]]
            self.radar.plot(*zip(*ring), pen=grid)
        for a, task in zip(angles, tasks):
            self.radar.plot([0, math.cos(a)], [0, math.sin(a)], pen=grid)
            text = pg.TextItem(task_label(task), anchor=(0.5, 0.5))
            text.setPos(1.15 * math.cos(a), 1.15 * math.sin(a))
            self.radar.addItem(text)
        for m, (path, _label) in enumerate(models):
            acc = [cells[(path, t)]["accuracy"] if (path, t) in cells else 0.0 for t in tasks]
            points = [(v * math.cos(a), v * math.sin(a)) for v, a in zip(acc + acc[:1], angles + angles[:1])]
            self.radar.plot(*zip(*points), pen=pg.mkPen(PALETTE[m % len(PALETTE)], width=2))
