"""The studio's panes, in tab order, each imported lazily so a missing or broken pane only affects itself.

One folder per tab (`chat/`, `config/`, `runs/`, ...): the pane widget in `view.py`, its logic in `presenter.py`,
and the tab's sub-views and dialogs beside them.

Every pane class has the constructor ``Pane(context: StudioContext, parent=None)``.
"""
from __future__ import annotations

import importlib
import traceback

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

# (tab title, module, class name)
PANES: list[tuple[str, str, str]] = [
    ("Datasets", "studio.panes.datasets.view", "DatasetsPane"),
    ("Config", "studio.panes.config.view", "ConfigPane"),
    ("Runs", "studio.panes.runs.view", "RunsPane"),
    ("Curves", "studio.panes.curves.view", "CurvesPane"),
    ("Chat", "studio.panes.chat.view", "ChatPane"),
    ("Export", "studio.panes.export.view", "ExportPane"),
    ("Evaluate", "studio.panes.evaluate.view", "EvaluatePane"),
]


class PlaceholderPane(QWidget):
    """Stands in for a pane that is not part of this build or failed to load; says which and why."""

    def __init__(self, title: str, reason: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.reason = reason
        label = QLabel(f"<h3>{title}</h3><p>This pane is not available.</p><pre>{reason}</pre>")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(label)


def load_pane_class(module: str, class_name: str):
    """The pane class, or (None, reason) when its module is absent or raises on import."""
    try:
        return getattr(importlib.import_module(module), class_name), None
    except ImportError as exc:
        return None, f"{module}.{class_name} is not installed ({exc})"
    except Exception:  # a pane with a bug must not take the whole window down
        return None, f"{module} failed to import:\n{traceback.format_exc(limit=3)}"


def create_pane(title: str, module: str, class_name: str, context, parent: QWidget | None = None) -> QWidget:
    cls, reason = load_pane_class(module, class_name)
    if cls is None:
        return PlaceholderPane(title, reason, parent)
    try:
        return cls(context, parent)
    except Exception:
        return PlaceholderPane(title, f"{class_name}(context) failed:\n{traceback.format_exc(limit=3)}", parent)
