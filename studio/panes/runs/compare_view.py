"""Compare panel: tick two or more runs to see the config fields that differ, their final metrics side by side,
and one metric's curves overlaid. Drawing only; studio/panes/runs/compare_presenter.py computes what is shown."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSplitter,
                               QTextBrowser, QVBoxLayout, QWidget)

from studio.panes.runs.compare_presenter import ComparePresenter
from studio.widgets.theme import COLORS

RUN_COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777")


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class ComparePanel(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.presenter = ComparePresenter(context)
        self.result: dict = {"runs": []}
        self.run_list = QListWidget()
        self.run_list.setToolTip("Tick two or more runs to compare them")
        self.run_list.itemChanged.connect(lambda _item: self.update_comparison())
        self.table = QTextBrowser()
        self.metric = QComboBox()
        self.metric.currentTextChanged.connect(self._plot)
        import pyqtgraph as pg  # as the Curves pane; imported when the panel is first built

        self.plot = pg.PlotWidget(background=COLORS["panel"])
        self.plot.addLegend(offset=(-10, 10))
        self.plot.setMinimumHeight(180)

        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        ll.addWidget(QLabel("Runs to compare"))
        ll.addWidget(self.run_list)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.table)
        curves = QWidget()
        cl = QVBoxLayout(curves)
        cl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Overlaid metric"))
        row.addWidget(self.metric, 1)
        cl.addLayout(row)
        cl.addWidget(self.plot)
        right.addWidget(curves)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        QVBoxLayout(self).addWidget(splitter)
        self.refresh()

    def refresh(self) -> None:
        """Re-list the runs, keeping the ticks."""
        ticked = set(self.checked())
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for run_id, label in self.presenter.runs():
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, run_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if run_id in ticked else Qt.CheckState.Unchecked)
            self.run_list.addItem(item)
        self.run_list.blockSignals(False)
        # Wide enough for the longest "name · method · status" (the splitter's 1:3 cut it mid-word), capped so the
        # table and the plot keep most of the width.
        fit = (self.run_list.sizeHintForColumn(0) + 2 * self.run_list.frameWidth()
               + self.run_list.verticalScrollBar().sizeHint().width())
        self.run_list.setMinimumWidth(min(fit, 360))
        self.update_comparison()

    def checked(self) -> list[str]:
        return [self.run_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.run_list.count())
                if self.run_list.item(i).checkState() == Qt.CheckState.Checked]

    def set_checked(self, run_ids: list[str]) -> None:
        self.run_list.blockSignals(True)
        for i in range(self.run_list.count()):
            item = self.run_list.item(i)
            on = item.data(Qt.ItemDataRole.UserRole) in run_ids
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.run_list.blockSignals(False)
        self.update_comparison()

    def update_comparison(self) -> None:
        self.result = r = self.presenter.compare(self.checked())
        if len(r["runs"]) < 2:
            self.table.setHtml(f"<p style='color:{COLORS['muted']}'>Tick two or more runs on the left.</p>")
        else:
            self.table.setHtml(self._html(r))
        current = self.metric.currentText()
        self.metric.blockSignals(True)
        self.metric.clear()
        self.metric.addItems(r["names"])
        self.metric.blockSignals(False)
        if r["names"]:
            self.metric.setCurrentText(current if current in r["names"] else r["names"][0])
        self._plot(self.metric.currentText())

    @staticmethod
    def _html(r: dict) -> str:
        esc = html.escape
        head = "".join(f"<th style='color:{RUN_COLORS[i % len(RUN_COLORS)]}'>{esc(label)}</th>"
                       for i, label in enumerate(r["labels"]))

        def table(title: str, rows, empty: str) -> str:
            if not rows:
                return f"<h4>{title}</h4><p>{empty}</p>"
            body = "".join(f"<tr><td><b>{esc(k)}</b></td>" + "".join(f"<td>{esc(_cell(v))}</td>" for v in values)
                           + "</tr>" for k, values in rows)
            return (f"<h4>{title}</h4><table cellspacing=0 cellpadding=3 border=1 style='border-collapse:collapse'>"
                    f"<tr><th></th>{head}</tr>{body}</table>")

        return (table("Config fields that differ", r["config"], "The configs are identical.")
                + table("Final metrics", r["metrics"], "No metrics yet."))

    def _plot(self, name: str) -> None:
        self.plot.clear()
        if not name:
            return
        for i, run_id in enumerate(self.result.get("runs", [])):
            steps, values = self.presenter.series(run_id, name)
            if steps.size:
                self.plot.plot(steps, values, pen={"color": RUN_COLORS[i % len(RUN_COLORS)], "width": 2},
                               name=self.presenter.label(run_id))
        self.plot.setTitle(name)
