"""File > Settings…: the workspace's launch targets (local, Slurm, SkyPilot) and the one new runs launch on.

``TargetsEditor`` holds the logic (a plain object, tested without a window): the list, validation through the
target models of ``core.launch.targets``, the launch-file preview and saving ``targets.json``. The dialog is a thin
form over it, built from each kind's fields (docs/cluster.md describes them).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from core.launch.launch_file import render_launch_file
from core.launch.targets import (KINDS, LOCAL, TargetError, find_target, load_default_target, load_targets,
                                 make_target, save_targets)


class TargetsEditor:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.targets = load_targets(self.path)
        self.default = load_default_target(self.path)

    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    def add(self, kind: str) -> str:
        n = 1
        while f"{kind}-{n}" in self.names():
            n += 1
        self.targets.append(make_target(kind, name=f"{kind}-{n}"))
        return f"{kind}-{n}"

    def remove(self, name: str) -> None:
        if name == LOCAL:
            raise TargetError("'local' is this machine and cannot be removed")
        self.targets = [t for t in self.targets if t.name != name]
        if self.default == name:
            self.default = LOCAL

    def update(self, name: str, kind: str, fields: dict) -> str:
        """Replace ``name`` with a target of ``kind`` made from ``fields`` (TargetError names the bad field)."""
        new = make_target(kind, **fields)
        if new.name != name and new.name in self.names():
            raise TargetError(f"a target named {new.name!r} exists already")
        self.targets = [new if t.name == name else t for t in self.targets]
        if self.default == name:
            self.default = new.name
        return new.name

    def preview(self, name: str, run_dir: str = "RUNS/RUN") -> str:  # placeholders the launch file accepts
        target = find_target(self.targets, name)
        return "runs on this machine: no launch file" if target.kind == "local" else render_launch_file(target, run_dir)

    def save(self) -> None:
        save_targets(self.path, self.targets, default=self.default)


def _field_widget(annotation, value):
    if annotation is bool:
        w = QCheckBox()
        w.setChecked(bool(value))
    elif annotation is int:
        w = QSpinBox()
        w.setRange(1, 65535)
        w.setValue(int(value))
    elif annotation == list[str] or "\n" in str(value):
        w = QPlainTextEdit("\n".join(value) if isinstance(value, list) else str(value))
        w.setMaximumHeight(60)
    else:
        w = QLineEdit(str(value))
    return w


def _field_value(widget, annotation):
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    if isinstance(widget, QSpinBox):
        return widget.value()
    if isinstance(widget, QPlainTextEdit):
        text = widget.toPlainText()
        return [line for line in text.splitlines() if line.strip()] if annotation == list[str] else text
    return widget.text()


class SettingsDialog(QDialog):
    def __init__(self, targets_path: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings — launch targets")
        self.editor = TargetsEditor(targets_path)
        self.current: str | None = None
        self.widgets: dict[str, QWidget] = {}
        self.list = QListWidget()
        self.kind = QComboBox()
        self.kind.addItems([k for k in KINDS if k != "local"])
        add, remove = QPushButton("Add"), QPushButton("Remove")
        self.default = QComboBox()
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        self.preview = QPlainTextEdit(readOnly=True)
        self.error = QLabel()
        self.error.setStyleSheet("color: #b00020")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)

        left = QVBoxLayout()
        left.addWidget(self.list)
        row = QHBoxLayout()
        for w in (self.kind, add, remove):
            row.addWidget(w)
        left.addLayout(row)
        left.addWidget(QLabel("Launch new runs on:"))
        left.addWidget(self.default)
        right = QVBoxLayout()
        right.addWidget(self.form_host)
        right.addWidget(QLabel("Launch file (written into the run folder):"))
        right.addWidget(self.preview)
        body = QHBoxLayout()
        body.addLayout(left, 1)
        body.addLayout(right, 2)
        layout = QVBoxLayout(self)
        layout.addLayout(body)
        layout.addWidget(self.error)
        layout.addWidget(buttons)
        self.resize(900, 560)

        self.list.currentTextChanged.connect(self.show_target)
        add.clicked.connect(lambda: self._refresh(self.editor.add(self.kind.currentText())))
        remove.clicked.connect(self.remove_current)
        self.default.currentTextChanged.connect(lambda name: setattr(self.editor, "default", name or LOCAL))
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        self._refresh(self.editor.names()[0])

    def _refresh(self, select: str) -> None:
        self.current = None
        for combo_or_list in (self.list, self.default):
            combo_or_list.blockSignals(True)
            combo_or_list.clear()
            combo_or_list.addItems(self.editor.names())
            combo_or_list.blockSignals(False)
        self.default.setCurrentText(self.editor.default)
        self.list.setCurrentRow(self.editor.names().index(select))
        self.show_target(select)

    def show_target(self, name: str) -> None:
        if not name or (self.current and not self.apply()):
            return
        self.current = name
        target = find_target(self.editor.targets, name)
        while self.form.rowCount():
            self.form.removeRow(0)
        self.widgets = {}
        for field, info in type(target).model_fields.items():
            if field == "kind":
                continue
            widget = _field_widget(info.annotation, getattr(target, field))
            widget.setToolTip(info.description or "")
            widget.setEnabled(name != LOCAL)
            self.widgets[field] = widget
            self.form.addRow(field.replace("_", " "), widget)
        self.preview.setPlainText(self.editor.preview(name))

    def apply(self) -> bool:
        """Validate the form into the editor; a problem is shown and keeps the target selected."""
        if self.current in (None, LOCAL):
            return True
        target = find_target(self.editor.targets, self.current)
        fields = {f: _field_value(w, type(target).model_fields[f].annotation) for f, w in self.widgets.items()}
        try:
            self.current = self.editor.update(self.current, target.kind, fields)
        except TargetError as exc:
            self.error.setText(str(exc))
            return False
        self.error.setText("")
        if self.list.currentItem() is not None and self.list.currentItem().text() != self.current:  # renamed
            self.list.currentItem().setText(self.current)
            self.default.blockSignals(True)
            self.default.clear()
            self.default.addItems(self.editor.names())
            self.default.setCurrentText(self.editor.default)
            self.default.blockSignals(False)
        self.preview.setPlainText(self.editor.preview(self.current))
        return True

    def remove_current(self) -> None:
        try:
            self.editor.remove(self.current or "")
        except TargetError as exc:
            self.error.setText(str(exc))
            return
        self.current = None
        self._refresh(LOCAL)

    def save(self) -> None:
        if not self.apply():
            return
        try:
            self.editor.save()
        except (TargetError, OSError) as exc:
            self.error.setText(str(exc))
            return
        self.accept()
