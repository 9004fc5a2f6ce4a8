"""The studio's theme: a light and a dark palette, one stylesheet, shared by every pane.

Which palette follows the system: ``QStyleHints.colorScheme()`` where the platform reports one (Qt 6.5+), else
the lightness of the application palette's window colour. ``apply_theme`` picks it before the first pane is
built and again when the system switches; ``COLORS`` is updated in place, so ``from ... import COLORS`` sees it.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

LIGHT = {
    "bg": "#f6f7f9",
    "panel": "#ffffff",
    "border": "#d9dde3",
    "text": "#1f2328",
    "muted": "#6b7280",
    "accent": "#2563eb",
    "accent_soft": "#dbeafe",
    "user": "#e8f0fe",
    "assistant": "#eefaf0",
    "system": "#f3f4f6",
    "chosen": "#e9f7ec",
    "rejected": "#fdecec",
    "ok": "#15803d",
    "bad": "#b91c1c",
    "warn": "#b45309",
    "loss": "#fde68a",
    "loss_alt": "#fbbf24",
    "banner_bg": "#fff7ed",
    "banner_border": "#fed7aa",
    "primary_disabled": "#93b4f5",
    "on_accent": "#ffffff",
}
# The same roles on a dark window: backgrounds dark, text light, status colours lightened to keep contrast.
DARK = {
    "bg": "#1e2024",
    "panel": "#26292e",
    "border": "#3d424a",
    "text": "#e6e8eb",
    "muted": "#9aa3ae",
    "accent": "#5b8def",
    "accent_soft": "#1f3358",
    "user": "#1f2f4a",
    "assistant": "#1d3526",
    "system": "#2d3036",
    "chosen": "#1d3526",
    "rejected": "#42211f",
    "ok": "#4ade80",
    "bad": "#f87171",
    "warn": "#fbbf24",
    "loss": "#6b5310",
    "loss_alt": "#8a6a12",
    "banner_bg": "#3a2a12",
    "banner_border": "#6b4a1a",
    "primary_disabled": "#3b4f7a",
    "on_accent": "#ffffff",
}
COLORS = dict(LIGHT)  # the palette in use (apply_theme switches it in place)


def is_dark(app: QApplication | None = None) -> bool:
    """Whether the system asks for a dark window: its colour scheme, else a dark palette."""
    app = app or QApplication.instance()
    if app is None:
        return False
    scheme = app.styleHints().colorScheme()
    if scheme != Qt.ColorScheme.Unknown:
        return scheme == Qt.ColorScheme.Dark
    return app.palette().color(QPalette.ColorRole.Window).lightness() < 128


def stylesheet() -> str:
    """The stylesheet for the palette in ``COLORS``."""
    return f"""
QWidget {{ font-size: 10pt; color: {COLORS['text']}; }}
QWidget#Pane {{ background: {COLORS['bg']}; }}
QGroupBox {{ background: {COLORS['panel']}; border: 1px solid {COLORS['border']}; border-radius: 6px;
            margin-top: 14px; padding: 10px 8px 8px 8px; font-weight: 600; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {COLORS['muted']}; }}
QPushButton {{ background: {COLORS['panel']}; border: 1px solid {COLORS['border']}; border-radius: 5px;
              padding: 5px 12px; }}
QPushButton:hover {{ border-color: {COLORS['accent']}; }}
QPushButton:disabled {{ color: {COLORS['muted']}; background: {COLORS['bg']}; }}
QPushButton[primary="true"] {{ background: {COLORS['accent']}; color: {COLORS['on_accent']};
                              border-color: {COLORS['accent']}; font-weight: 600; }}
QPushButton[primary="true"]:disabled {{ background: {COLORS['primary_disabled']};
                                       border-color: {COLORS['primary_disabled']}; }}
QLineEdit, QPlainTextEdit, QTextBrowser, QListWidget, QTableWidget {{
    background: {COLORS['panel']}; border: 1px solid {COLORS['border']}; border-radius: 4px; padding: 3px; }}
QLineEdit:focus, QPlainTextEdit:focus {{ border-color: {COLORS['accent']}; }}
QSpinBox, QDoubleSpinBox, QComboBox {{ min-height: 22px; }}
QWidget#FormPage {{ background: {COLORS['panel']}; }}
QLineEdit[invalid="true"], QSpinBox[invalid="true"], QDoubleSpinBox[invalid="true"] {{
    border-color: {COLORS['bad']}; }}
QLabel[role="error"] {{ color: {COLORS['bad']}; font-size: 9pt; }}
QLabel[role="warning"] {{ color: {COLORS['warn']}; font-size: 9pt; }}
QLabel[role="muted"] {{ color: {COLORS['muted']}; }}
QLabel[role="title"] {{ font-size: 14pt; font-weight: 600; }}
QLabel[role="banner"] {{ background: {COLORS['banner_bg']}; border: 1px solid {COLORS['banner_border']};
                         border-radius: 4px; padding: 6px; color: {COLORS['warn']}; }}
QProgressBar {{ border: 1px solid {COLORS['border']}; border-radius: 4px; background: {COLORS['panel']};
               text-align: center; height: 14px; }}
QProgressBar::chunk {{ background: {COLORS['accent']}; border-radius: 3px; }}
QTabWidget::pane {{ border: 1px solid {COLORS['border']}; border-radius: 4px; background: {COLORS['panel']}; }}
QTabBar::tab {{ padding: 6px 14px; }}
QTabBar::tab:selected {{ color: {COLORS['accent']}; font-weight: 600; }}
"""


def apply_theme(app: QApplication | None = None) -> None:
    """Pick the light or dark palette from the system and style the whole application with it (studio.app
    calls this once before the window is built, then on every system colour-scheme change)."""
    app = app or QApplication.instance()
    if app is None:
        return
    COLORS.clear()
    COLORS.update(DARK if is_dark(app) else LIGHT)
    app.setStyle("Fusion")
    app.setStyleSheet(stylesheet())
    for widget in app.allWidgets():  # panes styled earlier carry their own copy
        if widget.objectName() == "Pane":
            widget.setStyleSheet(stylesheet())


def follow_system_theme(app: QApplication) -> None:
    """Apply the theme now and again whenever the system switches between light and dark."""
    apply_theme(app)
    app.styleHints().colorSchemeChanged.connect(lambda _scheme: apply_theme(app))


def pane_style(widget) -> None:
    """Give a pane the theme even when the app-wide stylesheet was not applied (tests, grabs)."""
    widget.setObjectName("Pane")
    widget.setStyleSheet(stylesheet())
