"""Datasets › Token caches: a thin view over `TokenCachesPresenter` (tokenize for training, the list, Delete)."""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QProgressBar, QPushButton,
                               QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from studio.panes.datasets.token_caches_presenter import TokenCachesPresenter
from studio.widgets.common import label, primary_button, select_path

COLUMNS = ("Files", "Kind", "Tokenizer and length", "Tokens", "Size", "State")


def cache_row(entry) -> list[str]:
    """The table's cells for one `core.data.cache.CacheEntry`."""
    from core.data.cache import describe_cache_options  # core.data imports torch: only once entries exist

    state = "ready" if entry.complete else f"partial, {100 * entry.done_fraction:.0f} % (resumes when asked for)"
    files = ", ".join(Path(f).name for f in entry.files) or entry.name
    return [files, entry.kind, describe_cache_options(entry), f"{entry.num_tokens:,}",
            f"{entry.size_bytes / 1e6:,.1f} MB", state]


class TokenCachesTab(QWidget):
    """`current_file()` gives the file the Datasets pane has open; `tokenizer_dirs()` the workspace's tokenizers."""

    def __init__(self, context, current_file, tokenizer_dirs, parent: QWidget | None = None):
        super().__init__(parent)
        self.presenter = TokenCachesPresenter(context, self)
        self._current_file, self._tokenizer_dirs = current_file, tokenizer_dirs
        self._build()
        self._wire()

    def _build(self) -> None:
        v = QVBoxLayout(self)
        box = QGroupBox("Tokenize for training")
        form = QFormLayout(box)
        self.file_label = label("Open a pretrain, SFT or DPO file first.", "muted")
        self.file_label.setWordWrap(True)  # a long path wraps instead of widening the window
        form.addRow("File", self.file_label)
        self.tokenizer = QComboBox()
        self.tokenizer.setMinimumWidth(220)
        form.addRow("Tokenizer", self.tokenizer)
        self.seq_len = QSpinBox()
        self.seq_len.setRange(16, 131_072)
        self.seq_len.setSingleStep(128)
        self.seq_len.setValue(512)
        self.seq_len.setToolTip("SFT and DPO: the truncation length (max_len), part of the cache's identity. "
                                "Pretrain: any run re-uses the cache, whatever its seq_len.")
        form.addRow("Max sequence length", self.seq_len)
        row = QHBoxLayout()
        self.prepare_btn = primary_button("Tokenize for training")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        row.addWidget(self.prepare_btn)
        row.addWidget(self.cancel_btn)
        row.addStretch(1)
        form.addRow("", row)
        form.addRow("", self.bar)  # on its own row: the tab stays narrow enough to sit beside the docked guide
        self.status = label("Builds the token cache now, so a run on this file starts training at once. Caches go "
                            "to the workspace's cache folder, where its runs look.", "muted")
        self.status.setToolTip(str(self.presenter.cache_dir))
        form.addRow("", self.status)
        v.addWidget(box)

        v.addWidget(label("Token caches of this workspace", "title"))
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QTableWidget.SelectRows)
        self.table.setSelectionMode(QTableWidget.SingleSelection)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.resizeColumnsToContents()  # the headers whole, before any cache is listed
        v.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        self.refresh_btn = QPushButton("Refresh")
        self.delete_btn = QPushButton("Delete")
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_btn)
        buttons.addWidget(self.delete_btn)
        v.addLayout(buttons)

    def _wire(self) -> None:
        p = self.presenter
        self.prepare_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(p.cancel)
        self.refresh_btn.clicked.connect(p.refresh)
        self.delete_btn.clicked.connect(self.delete_selected)
        p.progress.connect(self._on_progress)
        p.runningChanged.connect(self._on_running)
        p.finished.connect(lambda status, message: self.status.setText(f"<b>{status}</b> · {message}"))
        p.failed.connect(self.status.setText)
        p.cachesChanged.connect(self._on_caches)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.refresh()
        super().showEvent(event)

    def show_file(self) -> None:
        """The pane opened another file. Only the label changes: listing the caches imports torch (core.data),
        which a hidden tab must not cost the window while it starts."""
        path = self._current_file()
        self.file_label.setText(str(path) if path else "Open a pretrain, SFT or DPO file first.")

    def refresh(self) -> None:
        """Look again at the open file, the workspace's tokenizers and the cache folder (when the tab is shown)."""
        self.show_file()
        current = self.tokenizer.currentData()
        self.tokenizer.clear()
        for d in self._tokenizer_dirs():
            self.tokenizer.addItem(d.name, str(d))
        if current:
            self.select_tokenizer(current)
        self.presenter.refresh()

    def select_tokenizer(self, path: str) -> None:
        select_path(self.tokenizer, path)

    def start(self) -> bool:
        return self.presenter.prepare(self._current_file(), self.tokenizer.currentData(), self.seq_len.value())

    def delete_selected(self) -> None:
        row = self.table.currentRow()
        if 0 <= row < len(self.presenter.entries):
            self.presenter.delete(self.presenter.entries[row])

    def _on_progress(self, done: int, total: int, text: str) -> None:
        self.bar.setValue(int(1000 * done / max(1, total)))
        self.status.setText(text)

    def _on_running(self, running: bool) -> None:
        self.prepare_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _on_caches(self, entries: list) -> None:
        self.table.setRowCount(len(entries))
        for r, entry in enumerate(entries):
            for c, text in enumerate(cache_row(entry)):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{entry.path}\nbuilt {time.ctime(entry.built_at)}" if entry.built_at else
                                str(entry.path))
                if c in (3, 4):
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
