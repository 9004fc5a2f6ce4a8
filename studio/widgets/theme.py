"""The studio's light theme: one palette, one stylesheet, shared by every pane."""
from __future__ import annotations

from PySide6.QtWidgets import QApplication

COLORS = {
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
}

STYLESHEET = f"""
QWidget {{ font-size: 10pt; color: {COLORS['text']}; }}
QWidget#Pane {{ background: {COLORS['bg']}; }}
QGroupBox {{ background: {COLORS['panel']}; border: 1px solid {COLORS['border']}; border-radius: 6px;
            margin-top: 14px; padding: 10px 8px 8px 8px; font-weight: 600; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {COLORS['muted']}; }}
QPushButton {{ background: {COLORS['panel']}; border: 1px solid {COLORS['border']}; border-radius: 5px;
              padding: 5px 12px; }}
QPushButton:hover {{ border-color: {COLORS['accent']}; }}
QPushButton:disabled {{ color: {COLORS['muted']}; background: {COLORS['bg']}; }}
QPushButton[primary="true"] {{ background: {COLORS['accent']}; color: white; border-color: {COLORS['accent']};
                              font-weight: 600; }}
QPushButton[primary="true"]:disabled {{ background: #93b4f5; border-color: #93b4f5; }}
QLineEdit, QPlainTextEdit, QTextBrowser, QListWidget, QTableWidget {{
    background: {COLORS['panel']}; border: 1px solid {COLORS['border']}; border-radius: 4px; padding: 3px; }}
QLineEdit:focus, QPlainTextEdit:focus {{ border-color: {COLORS['accent']}; }}
QSpinBox, QDoubleSpinBox, QComboBox {{ min-height: 22px; }}
QWidget#FormPage {{ background: {COLORS['panel']}; }}
QLineEdit[invalid="true"], QSpinBox[invalid="true"], QDoubleSpinBox[invalid="true"] {{
    border-color: {COLORS['bad']}; }}
QLabel[role="error"] {{ color: {COLORS['bad']}; font-size: 9pt; }}
QLabel[role="muted"] {{ color: {COLORS['muted']}; }}
QLabel[role="title"] {{ font-size: 14pt; font-weight: 600; }}
QLabel[role="banner"] {{ background: #fff7ed; border: 1px solid #fed7aa; border-radius: 4px; padding: 6px;
                         color: {COLORS['warn']}; }}
QProgressBar {{ border: 1px solid {COLORS['border']}; border-radius: 4px; background: {COLORS['panel']};
               text-align: center; height: 14px; }}
QProgressBar::chunk {{ background: {COLORS['accent']}; border-radius: 3px; }}
QTabWidget::pane {{ border: 1px solid {COLORS['border']}; border-radius: 4px; background: {COLORS['panel']}; }}
QTabBar::tab {{ padding: 6px 14px; }}
QTabBar::tab:selected {{ color: {COLORS['accent']}; font-weight: 600; }}
"""


def apply_theme(app: QApplication | None = None) -> None:
    """Apply the stylesheet to the whole application (the main window calls this once)."""
    app = app or QApplication.instance()
    if app is not None:
        app.setStyle("Fusion")
        app.setStyleSheet(STYLESHEET)


def pane_style(widget) -> None:
    """Give a pane the theme even when the app-wide stylesheet was not applied (tests, grabs)."""
    widget.setObjectName("Pane")
    widget.setStyleSheet(STYLESHEET)
