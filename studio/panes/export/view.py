"""Export pane: checkpoint → GGUF (f32 to Q4_K_M, parity-checked with llama.cpp) or a Hugging Face folder; a table of
the GGUF types with each export's size on disk and its quality against the f32 export."""
from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QHeaderView,
                               QProgressBar, QPushButton, QTableWidget, QTableWidgetItem, QTextBrowser, QVBoxLayout,
                               QWidget)

from studio.panes.export.presenter import GGUF_TYPES, TYPE_COLUMNS, ExportPresenter, parity_lines
from studio.widgets.common import banner, label, primary_button, quit_hook, set_banner
from studio.widgets.theme import COLORS, pane_style


class ExportPane(QWidget):
    def __init__(self, context, parent: QWidget | None = None):
        super().__init__(parent)
        pane_style(self)
        self.context = context
        self.presenter = ExportPresenter(context, self)
        root = QVBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        root.addWidget(label("Export", "title"))
        self.notice = banner()
        root.addWidget(self.notice)
        box = QGroupBox("What to export")
        form = QFormLayout(box)
        src_row = QHBoxLayout()
        self.source = QComboBox()
        self.source.setMinimumWidth(360)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.presenter.refresh_sources)
        src_row.addWidget(self.source, 1)
        src_row.addWidget(refresh)
        form.addRow("Checkpoint", src_row)
        self.qtype = QComboBox()
        for name, t in GGUF_TYPES.items():
            self.qtype.addItem(name)
            self.qtype.setItemData(self.qtype.count() - 1, t.summary, Qt.ItemDataRole.ToolTipRole)
        self.qtype.setToolTip("K-quants (q6_k, q5_k_m, q4_k_m) are made by llama.cpp's own quantizer from the f32 "
                              "export; every type but f32 is measured against the f32 export on held-out text")
        form.addRow("GGUF type", self.qtype)
        buttons = QHBoxLayout()
        self.gguf_btn = primary_button("Export GGUF")
        self.hf_btn = QPushButton("Export Hugging Face folder")
        self.open_btn = QPushButton("Open containing folder")
        self.open_btn.setEnabled(False)
        for b in (self.gguf_btn, self.hf_btn, self.open_btn):
            buttons.addWidget(b)
        buttons.addStretch(1)
        form.addRow("", buttons)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        form.addRow("Progress", self.bar)
        root.addWidget(box)
        types_box = QGroupBox("GGUF types of this checkpoint")
        tv = QVBoxLayout(types_box)
        self.types_table = QTableWidget(0, len(TYPE_COLUMNS))
        self.types_table.setHorizontalHeaderLabels(TYPE_COLUMNS)
        self.types_table.verticalHeader().hide()
        self.types_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.types_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.types_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.types_table.setToolTip("Quality against the f32 export on held-out text: perplexity change, share of "
                                    "positions predicting the same next token, mean KL divergence (nats)")
        tv.addWidget(self.types_table)
        root.addWidget(types_box)
        result = QGroupBox("Result")
        rv = QVBoxLayout(result)
        self.report_view = QTextBrowser()
        self.report_view.setHtml(f"<p style='color:{COLORS['muted']}'>A GGUF export is loaded back with llama.cpp "
                                 "(in a separate process) and compared with the PyTorch model: the parity report "
                                 "shows here.</p>")
        rv.addWidget(self.report_view)
        root.addWidget(result, 1)

        p = self.presenter
        p.sourcesChanged.connect(self._on_sources)
        p.progress.connect(self._on_progress)
        p.finished.connect(self._on_finished)
        p.busyChanged.connect(lambda busy: (self.gguf_btn.setEnabled(not busy), self.hf_btn.setEnabled(not busy)))
        self.gguf_btn.clicked.connect(lambda: self._export("gguf"))
        self.hf_btn.clicked.connect(lambda: self._export("hf"))
        self.open_btn.clicked.connect(self.open_folder)
        self.source.currentIndexChanged.connect(lambda _i: self.refresh_types())
        self.types_table.cellDoubleClicked.connect(lambda row, _col: self.qtype.setCurrentIndex(row))
        p.refresh_sources()
        self.refresh_types()
        quit_hook(self.presenter.shutdown)

    def _on_sources(self, sources: list) -> None:
        current = self.source.currentData()
        self.source.clear()
        for s in sources:
            self.source.addItem(s.label, s.path)
        i = self.source.findData(current)
        self.source.setCurrentIndex(max(0, i))
        if not sources:
            set_banner(self.notice, "No checkpoints yet: train a run first.")

    def refresh_types(self) -> None:
        """The types table for the chosen checkpoint: what each type's export measured, if it was made."""
        rows = self.presenter.type_rows(self.source.currentData())
        self.types_table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, text in enumerate(row):
                item = QTableWidgetItem(text)
                if c == 0:
                    item.setToolTip(GGUF_TYPES[text].summary)
                self.types_table.setItem(r, c, item)

    def _export(self, fmt: str) -> None:
        ck = self.source.currentData()
        if not ck:
            set_banner(self.notice, "Choose a checkpoint to export.")
            return
        set_banner(self.notice, "")
        self.bar.setRange(0, 0)
        self.report_view.setHtml("<p>Exporting…</p>")
        if fmt == "gguf":
            self.presenter.export_gguf(ck, self.qtype.currentText())
        else:
            self.presenter.export_hf(ck)

    def _on_progress(self, done, total, text: str) -> None:
        if total:
            self.bar.setRange(0, int(total))
            self.bar.setValue(int(done))
        self.bar.setFormat(f"%p% · {text}" if text else "%p%")

    def _on_finished(self, r: dict) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if not r.get("error") else 0)
        self.open_btn.setEnabled(bool(r.get("path") or r.get("file")))
        self.report_view.setHtml(report_html(r))
        self.refresh_types()

    def open_folder(self) -> None:
        r = self.presenter.last or {}
        target = Path(r.get("path") or r.get("file") or ".")
        folder = target if target.is_dir() else target.parent
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.presenter.shutdown()
        super().closeEvent(event)


def report_html(r: dict) -> str:
    parts = []
    if r.get("error"):
        parts.append(f"<p style='color:{COLORS['bad']}'><b>Export failed.</b> {html.escape(r['error'])}</p>")
    if r.get("path"):
        size = _size(Path(r["path"]))
        parts.append(f"<p><b>Written:</b> {html.escape(r['path'])} ({size})</p>")
    if r.get("format") == "gguf":
        rows = []
        for name, value, ok in parity_lines(r.get("parity")):
            color = COLORS["text"] if ok is None else (COLORS["ok"] if ok else COLORS["bad"])
            weight = "700" if name == "Result" else "400"
            rows.append(f"<tr><td style='color:{COLORS['muted']}; padding-right:16px'>{name}</td>"
                        f"<td style='color:{color}; font-weight:{weight}'>{html.escape(value)}</td></tr>")
        parts.append("<h3>Parity with llama.cpp</h3><table cellpadding='3'>" + "".join(rows) + "</table>")
        rep = r.get("report") or {}
        if rep.get("type_counts"):
            counts = ", ".join(f"{n} × {t}" for t, n in sorted(rep["type_counts"].items()))
            made = f" by {rep['quantizer']}" if rep.get("quantizer") else ""
            parts.append(f"<p><b>Tensors{made}:</b> {html.escape(counts)}</p>")
        if rep.get("fallbacks"):
            items = "".join(f"<li>{html.escape(f)}</li>" for f in rep["fallbacks"])
            parts.append(f"<p><b>Fallbacks</b> ({len(rep['fallbacks'])} tensors, as llama.cpp does):</p><ul>{items}</ul>")
        note = rep.get("note")
        if note:
            parts.append(f"<p style='color:{COLORS['warn']}'>{html.escape(note)}</p>")
    if r.get("format") == "hf" and r.get("report"):
        rep = r["report"]
        parts.append(f"<p>Architecture <b>{rep['architecture']}</b>, {rep['tensors']} tensors, {rep['dtype']}. "
                     "Loads with <code>transformers.AutoModelForCausalLM.from_pretrained(folder)</code>.</p>")
    if r.get("warning"):
        parts.append(f"<p style='color:{COLORS['warn']}'>{html.escape(r['warning'])}</p>")
    return "".join(parts)


def _size(path: Path) -> str:
    n = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{n / 1e6:.1f} MB"
