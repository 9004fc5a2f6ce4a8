"""Datasets pane: a thin view over `DatasetsPresenter` (files, preview, validation, stats, tokenizer) and the
token caches tab (`studio/panes/datasets/token_caches_view.py`)."""
from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLineEdit,
                               QListWidget, QListWidgetItem, QPlainTextEdit, QProgressBar, QPushButton, QSpinBox, QSplitter,
                               QTabWidget, QTextBrowser, QVBoxLayout, QWidget)

from core.data.formats import FORMATS
from core.data.records import KINDS
from studio.panes.datasets.presenter import FILE_FILTER, DatasetsPresenter
from studio.panes.datasets.token_caches_view import TokenCachesTab
from studio.widgets.common import banner, label, primary_button, quit_hook, select_path, set_banner
from studio.widgets.theme import COLORS, pane_style


class DatasetsPane(QWidget):
    def __init__(self, context, parent: QWidget | None = None):
        super().__init__(parent)
        pane_style(self)
        self.context = context
        self.presenter = DatasetsPresenter(context, self)
        self._build()
        self._wire()
        self.refresh_tokenizers()
        self.presenter.restore()
        quit_hook(self.presenter.shutdown)
        quit_hook(self.caches.presenter.shutdown)

    # ---- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        split = QSplitter(Qt.Horizontal)
        root.addWidget(split)

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 8, 0)
        lv.addWidget(label("Datasets", "title"))
        buttons = QHBoxLayout()
        self.add_files_btn = QPushButton("Add files…")
        self.add_folder_btn = QPushButton("Add folder…")
        buttons.addWidget(self.add_files_btn)
        buttons.addWidget(self.add_folder_btn)
        lv.addLayout(buttons)
        self.file_list = QListWidget()
        lv.addWidget(self.file_list, 1)
        self.kind_label = label("No file open", "muted")
        lv.addWidget(self.kind_label)
        self.notice = banner()
        lv.addWidget(self.notice)
        split.addWidget(left)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._preview_tab(), "Preview")
        self.tabs.addTab(self._validation_tab(), "Validation")
        self.tabs.addTab(self._mapping_tab(), "Mapping")
        self.stats_tab = self._stats_tab()
        self.tabs.addTab(self.stats_tab, "Stats")
        self.tabs.addTab(self._tokenizer_tab(), "Tokenizer")
        self.caches = TokenCachesTab(self.context, lambda: self.presenter.path, self.presenter.tokenizer_dirs)
        self.tabs.addTab(self.caches, "Token caches")
        split.addWidget(self.tabs)
        split.setSizes([260, 740])

    def _preview_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        nav = QHBoxLayout()
        self.prev_btn = QPushButton("◀ Previous")
        self.next_btn = QPushButton("Next ▶")
        self.page_spin = QSpinBox()
        self.page_spin.setRange(1, 1)
        self.page_spin.setKeyboardTracking(False)
        self.page_label = label("", "muted", wrap=False)
        for widget in (self.prev_btn, self.page_spin, self.next_btn, self.page_label):
            nav.addWidget(widget)
        nav.addStretch(1)
        self.index_bar = QProgressBar()
        self.index_bar.setMaximumWidth(220)
        self.index_bar.setFormat("indexing %p%")
        nav.addWidget(self.index_bar)
        v.addLayout(nav)
        self.preview = QTextBrowser()
        self.preview.setOpenExternalLinks(False)
        v.addWidget(self.preview, 1)
        return w

    def _validation_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        row = QHBoxLayout()
        self.validate_kind = QComboBox()
        self.validate_kind.addItems(list(KINDS))  # core's one list of record kinds
        self.validate_btn = primary_button("Validate")
        self.validate_bar = QProgressBar()
        row.addWidget(label("Check as", wrap=False))
        row.addWidget(self.validate_kind)
        row.addWidget(self.validate_btn)
        row.addWidget(self.validate_bar, 1)
        v.addLayout(row)
        self.validate_summary = label("Validation reads every record with the trainer's own checks.", "muted")
        v.addWidget(self.validate_summary)
        self.problems = QPlainTextEdit()
        self.problems.setReadOnly(True)
        self.problems.setPlaceholderText("Problems appear here as file:line: field: message")
        v.addWidget(self.problems, 1)
        return w

    def _mapping_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        row = QHBoxLayout()
        self.mapping_format = QComboBox()
        self.mapping_format.addItems(list(FORMATS))  # core's one list of formats
        self.mapping_save = primary_button("Save mapping")
        row.addWidget(label("Format", wrap=False))
        row.addWidget(self.mapping_format)
        row.addStretch(1)
        row.addWidget(self.mapping_save)
        v.addLayout(row)
        self.mapping_origin = label("Open a file to see how its rows are read.", "muted")
        v.addWidget(self.mapping_origin)
        self.mapping_edit = QPlainTextEdit()
        self.mapping_edit.setPlaceholderText('{"format": ..., "columns": {...}, "tags": {...}}')
        self.mapping_edit.setMaximumHeight(180)
        v.addWidget(self.mapping_edit)
        prow = QHBoxLayout()
        self.mapping_row = QSpinBox()
        self.mapping_row.setRange(1, 1_000_000_000)
        self.mapping_preview_btn = QPushButton("Preview row")
        prow.addWidget(label("Row", wrap=False))
        prow.addWidget(self.mapping_row)
        prow.addWidget(self.mapping_preview_btn)
        prow.addWidget(label("rendered with the Stats tab's tokenizer; learned tokens are marked", "muted"), 1)
        v.addLayout(prow)
        self.mapping_preview = QTextBrowser()
        v.addWidget(self.mapping_preview, 1)
        return w

    def _stats_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        row = QHBoxLayout()
        self.stats_tokenizer = QComboBox()
        self.stats_tokenizer.setMinimumWidth(220)
        self.stats_browse = QPushButton("Other…")
        self.stats_btn = primary_button("Compute")
        row.addWidget(label("Tokenizer", wrap=False))
        row.addWidget(self.stats_tokenizer, 1)
        row.addWidget(self.stats_browse)
        row.addWidget(self.stats_btn)
        v.addLayout(row)
        self.stats_label = label("Token lengths are measured on a sample of up to 2,000 records.", "muted")
        v.addWidget(self.stats_label)
        pg.setConfigOptions(antialias=True, background="w", foreground=COLORS["text"])
        self.hist = pg.PlotWidget()
        self.hist.setLabel("bottom", "tokens per record")
        self.hist.setLabel("left", "records")
        self.hist.showGrid(x=True, y=True, alpha=0.2)
        v.addWidget(self.hist, 1)
        return w

    def _tokenizer_tab(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        box = QGroupBox("Train a byte-level BPE tokenizer on the listed files")
        form = QFormLayout(box)
        self.tok_name = QLineEdit("my-tokenizer")
        self.tok_vocab = QSpinBox()
        self.tok_vocab.setRange(300, 200_000)
        self.tok_vocab.setSingleStep(512)
        self.tok_vocab.setValue(6400)
        form.addRow("Name", self.tok_name)
        form.addRow("Vocabulary size", self.tok_vocab)
        self.tok_btn = primary_button("Train tokenizer…")
        form.addRow("", self.tok_btn)
        self.tok_bar = QProgressBar()
        form.addRow("Progress", self.tok_bar)
        self.tok_status = label("Saved into workspace/tokenizers/<name>.", "muted")
        form.addRow("", self.tok_status)
        v.addWidget(box)
        v.addStretch(1)
        return w

    # ---- wiring ----------------------------------------------------------------------------------
    def _wire(self) -> None:
        p = self.presenter
        self.add_files_btn.clicked.connect(self._add_files)
        self.add_folder_btn.clicked.connect(self._add_folder)
        self.file_list.currentItemChanged.connect(self._open_item)
        self.prev_btn.clicked.connect(lambda: p.show_page(p.page - 1))
        self.next_btn.clicked.connect(lambda: p.show_page(p.page + 1))
        self.page_spin.valueChanged.connect(lambda v: p.show_page(v - 1) if v - 1 != p.page else None)
        p.filesChanged.connect(self._on_files)
        p.fileOpened.connect(self._on_opened)
        p.fileOpened.connect(lambda _path, _kind: self.caches.show_file())
        p.pageReady.connect(self._on_page)
        p.pagePending.connect(lambda n: self.page_label.setText(f"page {n + 1}: waiting for the index…"))
        p.indexProgress.connect(self._on_index_progress)
        p.indexFinished.connect(self._on_indexed)
        p.failed.connect(lambda msg: set_banner(self.notice, msg))
        self.validate_btn.clicked.connect(self._validate)
        p.fileOpened.connect(lambda *_: p.load_mapping())
        p.mappingLoaded.connect(self._on_mapping)
        p.mappingPreviewed.connect(self.mapping_preview.setHtml)
        p.mappingSaved.connect(lambda path: self.mapping_origin.setText(f"saved to {path}"))
        self.mapping_format.activated.connect(lambda _i: self._mapping_format(self.mapping_format.currentText()))
        self.mapping_save.clicked.connect(self._save_mapping)
        self.mapping_preview_btn.clicked.connect(self._preview_mapping)
        p.validationProgress.connect(lambda d, t, _s: self._bar(self.validate_bar, d, t))
        p.validationFinished.connect(self._on_validated)
        self.stats_btn.clicked.connect(self._stats)
        self.tabs.currentChanged.connect(lambda i: self.tabs.widget(i) is self.stats_tab and self.refresh_tokenizers())
        self.stats_browse.clicked.connect(self._browse_tokenizer)
        p.statsFinished.connect(self._on_stats)
        self.tok_btn.clicked.connect(self._train_tokenizer)
        p.tokenizerProgress.connect(lambda d, t, _s: self._bar(self.tok_bar, d, t))
        p.tokenizerFinished.connect(self._on_tokenizer)

    @staticmethod
    def _bar(bar: QProgressBar, done: int, total: int) -> None:
        if total <= 0:
            bar.setRange(0, 0)  # busy indicator when the total is unknown
            return
        bar.setRange(0, 1000)
        bar.setValue(int(1000 * done / total))

    def _add_files(self) -> None:
        start = str(self.context.workspace.datasets_dir)
        files, _ = QFileDialog.getOpenFileNames(self, "Add dataset files", start, FILE_FILTER)
        if files:
            self.presenter.add_paths(files)

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder of datasets, or one written by "
                                                        "datasets.save_to_disk")
        if folder:
            self.presenter.add_paths([folder])

    def _open_item(self, item, _previous=None) -> None:
        if item is None:
            return
        path = Path(item.data(Qt.UserRole))
        self.kind_label.setText(f"<b>{path.name}</b><br>detecting the kind…")
        self.presenter.open(path)

    def _on_files(self, files: list) -> None:
        current = self.file_list.currentItem()
        self.file_list.blockSignals(True)
        self.file_list.clear()
        for f in files:
            item = QListWidgetItem(f"{Path(f).name}   ·   {Path(f).parent.name}/")
            item.setData(Qt.UserRole, f)
            item.setToolTip(f)
            self.file_list.addItem(item)
        self.file_list.blockSignals(False)
        if current is None and files:
            self.file_list.setCurrentRow(0)

    # ---- mapping ---------------------------------------------------------------------------------
    def _on_mapping(self, info: dict) -> None:
        import json

        origin = {"sidecar": "from its .mapping.json", "config": "as a run recorded it",
                  "detected": "detected from its first rows"}.get(info["origin"], info["origin"])
        self.mapping_origin.setText(f"Read as <b>{info['mapping']['format']}</b> ({origin}) · columns: "
                                    f"{', '.join(info['columns']) or '—'}")
        self.mapping_format.setCurrentText(info["mapping"]["format"])
        self.mapping_edit.setPlainText(json.dumps(info["mapping"], indent=2, ensure_ascii=False))

    def _mapping_format(self, fmt: str) -> None:
        import json

        from core.data.formats import DEFAULTS

        self.mapping_edit.setPlainText(json.dumps({"format": fmt, **DEFAULTS[fmt]}, indent=2, ensure_ascii=False))

    def _mapping_data(self) -> dict | None:
        import json

        try:
            return json.loads(self.mapping_edit.toPlainText())
        except json.JSONDecodeError as exc:
            set_banner(self.notice, f"mapping: invalid JSON: {exc.msg} at line {exc.lineno}")
            return None

    def _save_mapping(self) -> None:
        data = self._mapping_data()
        if data is not None:
            self.presenter.save_mapping(data)

    def _preview_mapping(self) -> None:
        data = self._mapping_data()
        if data is not None:
            self.presenter.preview_mapping(data, self.mapping_row.value() - 1, self.stats_tokenizer.currentData())

    def _on_opened(self, path: str, kind: str) -> None:
        from core.data.sources import source_size

        size = source_size(path) / 1e6
        self.kind_label.setText(f"<b>{Path(path).name}</b><br>{kind or 'unknown kind'} · {size:,.1f} MB")
        set_banner(self.notice, "")
        if kind:
            self.validate_kind.setCurrentText(kind)
        self.index_bar.setValue(0)
        self.page_spin.blockSignals(True)
        self.page_spin.setRange(1, 1_000_000_000)
        self.page_spin.setValue(1)
        self.page_spin.blockSignals(False)

    def _on_page(self, page: int, html: str) -> None:
        self.preview.setHtml(html)
        self.page_spin.blockSignals(True)
        self.page_spin.setValue(page + 1)
        self.page_spin.blockSignals(False)
        total = self.presenter.page_count
        self.page_label.setText(f"of {total:,}" if total else "of … (indexing)")

    def _on_index_progress(self, done: int, total: int, text: str) -> None:
        self._bar(self.index_bar, done, total)
        self.index_bar.setFormat(f"indexing %p% · {text}")

    def _on_indexed(self, lines: int) -> None:
        self.index_bar.setRange(0, 1)
        self.index_bar.setValue(1)
        self.index_bar.setFormat(f"{lines:,} lines")
        pages = self.presenter.page_count or 1
        self.page_spin.setMaximum(pages)
        self.page_label.setText(f"of {pages:,}")

    def _validate(self) -> None:
        self.problems.clear()
        self.validate_summary.setText("Validating…")
        self.presenter.validate(self.validate_kind.currentText())

    def _on_validated(self, result: dict) -> None:
        ok = not result["skipped"]
        color = COLORS["ok"] if ok else COLORS["bad"]
        self.validate_summary.setText(f"<span style='color:{color}'><b>{'OK' if ok else 'Problems found'}"
                                      f"</b></span> · {result['summary']}")
        self.problems.setPlainText("\n".join(result["errors"]) or "No problems.")

    def refresh_workspace(self) -> None:
        """The workspace's datasets or tokenizers changed (``context.datasetsChanged``): list what appeared."""
        self.refresh_tokenizers()
        self.presenter.restore()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt API)
        # A tokenizer trained outside the studio (`minimind tokenizer train`) sends no signal: a glob of the
        # workspace's tokenizers folder is cheap, so look again whenever the pane comes into view.
        self.refresh_tokenizers()
        super().showEvent(event)

    def refresh_tokenizers(self) -> None:
        current = self.stats_tokenizer.currentData()
        self.stats_tokenizer.clear()
        for d in self.presenter.tokenizer_dirs():
            self.stats_tokenizer.addItem(d.name, str(d))
        if current:
            self._select_tokenizer(current)

    def _select_tokenizer(self, path: str) -> None:
        select_path(self.stats_tokenizer, path)

    def _browse_tokenizer(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with tokenizer.json (a tokenizer or checkpoint)")
        if folder:
            tok = Path(folder) / "tokenizer"
            self._select_tokenizer(str(tok if (tok / "tokenizer.json").is_file() else folder))

    def _stats(self) -> None:
        tok = self.stats_tokenizer.currentData()
        if not tok:
            set_banner(self.notice, "Choose a tokenizer for the stats: train one in the Tokenizer tab or "
                                    "pick a checkpoint folder with “Other…”.")
            return
        self.stats_label.setText("Measuring…")
        self.presenter.compute_stats(tok)

    def _on_stats(self, s: dict) -> None:
        lines = f"{s['lines']:,} lines · " if s["lines"] else ""
        self.stats_label.setText(
            f"{lines}{s['sampled']:,} records sampled · mean {s['mean']:.0f} tokens · median {s['p50']:.0f} · "
            f"p95 {s['p95']:.0f} · max {s['max']:,} · <b>{s['chars_per_token']:.2f} chars/token</b>")
        self.hist.clear()
        lengths = s["lengths"]
        if len(lengths):
            import numpy as np
            counts, edges = np.histogram(lengths, bins=min(40, max(5, len(set(lengths.tolist())))))
            self.hist.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts,
                                              brush=COLORS["accent"], pen=pg.mkPen("w")))

    def _train_tokenizer(self) -> None:
        self.tok_status.setText("Training…")
        self.presenter.train_tokenizer(self.tok_name.text().strip() or "tokenizer", self.tok_vocab.value())

    def _on_tokenizer(self, out_dir: str) -> None:
        self._bar(self.tok_bar, 1, 1)
        self.tok_status.setText(f"Saved to {out_dir}")
        self.refresh_tokenizers()
        self._select_tokenizer(out_dir)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.presenter.shutdown()
        self.caches.presenter.shutdown()
        super().closeEvent(event)
