"""Tiny widget helpers: labelled rows, banners, primary buttons, a "not available" notice."""
from __future__ import annotations

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
