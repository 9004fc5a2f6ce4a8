"""The Curves pane's rollout browser: RL samples listed by their question, the selected one shown whole.

A logged prompt is the chat template's text, which starts with a system turn (for tool tasks a ~300-token tools
block), so the list labels each sample with its last user turn instead; the detail below renders the prompt
(system and tools folded into a short block), the completion with its tool calls and tool responses, and the
reward. Reading the text back is core.rl.transcript's job; the full read runs only for the selected row.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QSplitter, QTableWidget, QTableWidgetItem,
                               QTextBrowser, QVBoxLayout, QWidget)

from core.rl.transcript import prompt_question, read_sample
from studio.widgets.rollout_html import rollout_html

SAMPLE_COLUMNS = ("Step", "Question", "Completion", "Reward", "Breakdown")
CELL_CHARS = 400  # the list shows the start of a long completion; the detail shows all of it


def _cell(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS - 1] + "…"


def sample_cells(sample: dict) -> tuple[str, ...]:
    """The list row of one stored sample (run_store.samples' shape)."""
    reward = sample.get("reward")
    return (str(sample.get("step", "")), _cell(prompt_question(str(sample.get("prompt") or ""))),
            _cell(str(sample.get("completion") or "")),
            f"{reward:.3f}" if isinstance(reward, (int, float)) else "",
            ", ".join(f"{k} {v:.2f}" if isinstance(v, (int, float)) else f"{k} {v}"
                      for k, v in (sample.get("rewards") or {}).items()))


class RolloutBrowser(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict] = []
        self.table = QTableWidget(0, len(SAMPLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(SAMPLE_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setWordWrap(True)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        for col, mode in enumerate((QHeaderView.ResizeMode.ResizeToContents, QHeaderView.ResizeMode.Stretch,
                                    QHeaderView.ResizeMode.Stretch, QHeaderView.ResizeMode.ResizeToContents,
                                    QHeaderView.ResizeMode.ResizeToContents)):
            header.setSectionResizeMode(col, mode)
        self.detail = QTextBrowser()
        self.detail.setPlaceholderText("Select a rollout to read its prompt, tool calls and reply.")
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.detail)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.table.currentCellChanged.connect(lambda row, *_: self.show_sample(row))

    def clear(self) -> None:
        self.rows = []
        self.table.setRowCount(0)
        self.detail.clear()

    def append(self, rows: list[dict]) -> None:
        for sample in rows:
            r = self.table.rowCount()
            self.table.insertRow(r)
            self.rows.append(sample)
            for c, text in enumerate(sample_cells(sample)):
                self.table.setItem(r, c, QTableWidgetItem(text))

    def show_sample(self, row: int) -> None:
        if not 0 <= row < len(self.rows):
            self.detail.clear()
            return
        sample = self.rows[row]
        view = read_sample(str(sample.get("prompt") or ""), str(sample.get("completion") or ""))
        self.detail.setHtml(rollout_html(view, sample))
