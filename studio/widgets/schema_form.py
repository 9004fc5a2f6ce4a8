"""A form drawn from `FieldSpec`s (see studio/panes/config/schema.py): one editor per field, its pydantic error
shown in red under it. The form only reads and writes values; validation is the presenter's job."""
from __future__ import annotations

import json
import math
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QVBoxLayout, QWidget)

from core.config.paths import get_path, set_path
from studio.panes.config.schema import FieldSpec
from studio.widgets.common import set_invalid

INT_LIMIT = 2**31 - 1
NULL_TEXT = "(default)"


def _fmt_float(v) -> str:
    return "" if v is None else (f"{v:g}" if isinstance(v, (int, float)) else str(v))


class SchemaForm(QWidget):
    """Editors for `specs`. `values()` → nested dict (unparsable text yields a `_ParseError` entry in
    `parse_errors`); `set_values(dict)`; `set_errors({"dotted.key": message})`."""

    changed = Signal()

    def __init__(self, specs: list[FieldSpec], parent: QWidget | None = None, strip_prefix: int = 0):
        super().__init__(parent)
        self.specs = specs
        self.editors: dict[str, QWidget] = {}
        self.error_labels: dict[str, QLabel] = {}
        self.parse_errors: dict[str, str] = {}
        form = QFormLayout(self)
        form.setContentsMargins(4, 4, 4, 4)
        form.setVerticalSpacing(6)
        form.setHorizontalSpacing(14)
        for spec in specs:
            editor, field_widget = self._editor(spec)
            self.editors[spec.key] = editor
            err = QLabel("")
            err.setProperty("role", "error")
            err.setWordWrap(True)
            err.setVisible(False)
            self.error_labels[spec.key] = err
            box = QWidget()
            v = QVBoxLayout(box)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(2)
            v.addWidget(field_widget)
            v.addWidget(err)
            name = QLabel(" · ".join(p.replace("_", " ") for p in spec.path[strip_prefix:]))
            name.setToolTip(spec.description)
            box.setToolTip(spec.description)
            form.addRow(name, box)
        self.set_values({})

    # ---- editors ---------------------------------------------------------------------------------
    def _editor(self, spec: FieldSpec) -> tuple[QWidget, QWidget]:
        if spec.kind == "int":
            w = QSpinBox()
            lo = spec.minimum if spec.minimum is not None else (
                math.floor(spec.exclusive_minimum) + 1 if spec.exclusive_minimum is not None else -INT_LIMIT)
            hi = spec.maximum if spec.maximum is not None else INT_LIMIT
            lo, hi = max(int(lo), -INT_LIMIT), min(int(hi), INT_LIMIT)
            if spec.nullable:  # one step below the minimum means "not set": pydantic's default applies
                lo -= 1
                w.setSpecialValueText("auto")
            w.setRange(lo, hi)
            w.setAccelerated(True)
            w.valueChanged.connect(self.changed)
            return w, w
        if spec.kind == "bool":
            w = QCheckBox()
            w.toggled.connect(self.changed)
            return w, w
        if spec.kind == "enum":
            w = QComboBox()
            if spec.nullable:
                w.addItem(NULL_TEXT, None)
            for c in spec.choices:
                w.addItem(str(c), c)
            w.currentIndexChanged.connect(self.changed)
            return w, w
        w = QLineEdit()
        w.textChanged.connect(self.changed)
        if spec.kind == "float":
            w.setPlaceholderText("number, e.g. 3e-4" if not spec.nullable else "empty = default")
        elif spec.kind == "list":
            w.setPlaceholderText("; separated")
        elif spec.kind == "json":
            w.setPlaceholderText("JSON")
        elif spec.nullable:
            w.setPlaceholderText("empty = default")
        if spec.kind in ("path", "list") and any(h in spec.path[-1] for h in ("file", "dir", "init", "tokenizer",
                                                                               "reference", "critic")):
            row = QWidget()
            h = QHBoxLayout(row)
            h.setContentsMargins(0, 0, 0, 0)
            h.addWidget(w, 1)
            btn = QPushButton("Browse…")
            btn.clicked.connect(lambda: self._browse(spec, w))
            h.addWidget(btn)
            return w, row
        return w, w

    def _browse(self, spec: FieldSpec, edit: QLineEdit) -> None:
        if spec.kind == "list":
            files, _ = QFileDialog.getOpenFileNames(self, spec.title)
            if files:
                edit.setText("; ".join(files))
        elif "file" in spec.path[-1]:
            f, _ = QFileDialog.getOpenFileName(self, spec.title)
            if f:
                edit.setText(f)
        else:
            d = QFileDialog.getExistingDirectory(self, spec.title)
            if d:
                edit.setText(d)

    # ---- values ----------------------------------------------------------------------------------
    def values(self) -> dict:
        out: dict = {}
        self.parse_errors = {}
        for spec in self.specs:
            w = self.editors[spec.key]
            try:
                value = self._read(spec, w)
            except ValueError as exc:
                self.parse_errors[spec.key] = str(exc)
                value = w.text()  # passed on as text so pydantic reports it too
            set_path(out, spec.path, value)
        return out

    @staticmethod
    def _read(spec: FieldSpec, w) -> Any:
        if spec.kind == "int":
            return None if spec.nullable and w.value() == w.minimum() else w.value()
        if spec.kind == "bool":
            return w.isChecked()
        if spec.kind == "enum":
            return w.currentData()
        text = w.text().strip()
        if spec.kind == "float":
            if not text:
                if spec.nullable:
                    return None
                raise ValueError("enter a number")
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number") from None
        if spec.kind == "list":
            return [p.strip() for p in text.split(";") if p.strip()]
        if spec.kind == "json":
            if not text:
                return None
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc.msg}") from None
        return text if text or not spec.nullable else None

    def set_values(self, data: dict) -> None:
        """Show `data` (nested dict); fields it lacks show their schema default."""
        for spec in self.specs:
            w = self.editors[spec.key]
            value = get_path(data, spec.path, spec.default)
            w.blockSignals(True)
            if spec.kind == "int":
                w.setValue(w.minimum() if value is None else int(value))
            elif spec.kind == "bool":
                w.setChecked(bool(value))
            elif spec.kind == "enum":
                i = w.findData(value)
                w.setCurrentIndex(max(i, 0))
            elif spec.kind == "float":
                w.setText(_fmt_float(value))
            elif spec.kind == "list":
                w.setText("; ".join(value or []))
            elif spec.kind == "json":
                w.setText("" if value is None else json.dumps(value, ensure_ascii=False))
            else:
                w.setText("" if value is None else str(value))
            if isinstance(w, QLineEdit):
                w.setCursorPosition(0)  # long values (JSON, paths) read from their start
            w.blockSignals(False)
        self.changed.emit()

    def set_some(self, values: dict[str, Any]) -> None:
        """Set the fields named by dotted key in `values` (keys this form lacks are ignored), others unchanged."""
        mine = {k: v for k, v in values.items() if k in self.editors}
        if not mine:
            return
        data = self.values()
        for key, value in mine.items():
            set_path(data, tuple(key.split(".")), value)
        self.set_values(data)

    def set_errors(self, errors: dict[str, str], warnings: dict[str, str] | None = None) -> None:
        """Show each field's message under it (keys not in this form are ignored). An error marks the field
        invalid; a warning (shown where there is no error) only says something, in the warning colour."""
        warnings = warnings or {}
        for key, lab in self.error_labels.items():
            msg = errors.get(key, "")
            role = "error" if msg else "warning"
            msg = msg or warnings.get(key, "")
            if lab.property("role") != role:
                lab.setProperty("role", role)
                lab.style().unpolish(lab)
                lab.style().polish(lab)
            lab.setText(msg)
            lab.setVisible(bool(msg))
            set_invalid(self.editors[key], role == "error" and bool(msg))
