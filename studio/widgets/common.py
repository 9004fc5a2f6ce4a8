"""Tiny widget helpers: labelled rows, banners, primary buttons, a "not available" notice."""
from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QLabel, QPushButton, QWidget


def label(text: str, role: str | None = None, wrap: bool = True) -> QLabel:
    lab = QLabel(text)
    lab.setWordWrap(wrap)
    if role:
        lab.setProperty("role", role)
    return lab


def primary_button(text: str) -> QPushButton:
    btn = QPushButton(text)
    btn.setProperty("primary", True)
    return btn


def banner(text: str = "") -> QLabel:
    """An orange notice, hidden while empty (used for "not available" messages)."""
    lab = label(text, "banner")
    lab.setVisible(bool(text))
    return lab


def set_banner(lab: QLabel, text: str) -> None:
    lab.setText(text)
    lab.setVisible(bool(text))


def set_invalid(widget: QWidget, invalid: bool) -> None:
    """Flip the `invalid` property and re-polish so the stylesheet picks it up."""
    widget.setProperty("invalid", invalid)
    widget.style().unpolish(widget)
    widget.style().polish(widget)


def quit_hook(callback) -> None:
    """Run `callback` when the application quits: panes are children of the main window and get no closeEvent
    of their own, yet their presenters must stop worker threads and close llama.cpp models before exit."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(callback)


class Deferred:
    """``slot`` run in a later pass of the event loop, once however often it was asked for meanwhile; ``owner``
    (a QObject) ends it: a request after the owner is gone is dropped. ``cancel()`` skips a pending run (the
    work was just done another way). Used for slots that read the store and redraw, so one signal reaching many
    of them does not hold the UI thread in a single dispatch (bench.ui_stall)."""

    def __init__(self, owner: QObject, slot) -> None:
        self.owner, self.slot, self.pending = owner, slot, False

    def __call__(self, *_args) -> None:
        if not self.pending:
            self.pending = True
            try:
                QTimer.singleShot(0, self.owner, self._run)
            except RuntimeError:  # the owner is gone (a context outlived its window): nothing to redraw
                self.pending = False

    def cancel(self) -> None:
        self.pending = False

    def _run(self) -> None:
        if self.pending:
            self.pending = False
            self.slot()


def select_path(combo, path: str) -> None:
    """Select the item of `combo` whose data is `path`, adding it (named by its last part) when missing."""
    from pathlib import Path

    i = combo.findData(path)
    if i < 0:
        combo.addItem(Path(path).name, path)
        i = combo.count() - 1
    combo.setCurrentIndex(i)
