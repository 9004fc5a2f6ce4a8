"""The Runs pane's tabs: History (the table and detail), Lineage (graph) and Compare. Lineage and Compare are
built when first shown and redrawn only while shown (a run's live updates must not redraw a hidden graph)."""
from __future__ import annotations

from PySide6.QtWidgets import QTabWidget, QWidget


class RunViews(QTabWidget):
    def __init__(self, context, history: QWidget, status_colors: dict[str, str], parent: QWidget | None = None):
        super().__init__(parent)
        self.context, self.status_colors = context, status_colors
        self.lineage = self.compare = None
        self.addTab(history, "History")
        self.addTab(QWidget(), "Lineage")
        self.addTab(QWidget(), "Compare")
        self.currentChanged.connect(lambda _i: self.refresh())

    def show_view(self, title: str) -> QWidget:
        index = next(i for i in range(self.count()) if self.tabText(i) == title)
        self.setCurrentIndex(index)
        return self._build(title)

    def _build(self, title: str) -> QWidget:
        if title == "Lineage" and self.lineage is None:
            from studio.panes.runs.lineage_view import LineageView

            self.lineage = self._place(title, LineageView(self.context, self.status_colors))
        elif title == "Compare" and self.compare is None:
            from studio.panes.runs.compare_view import ComparePanel

            self.compare = self._place(title, ComparePanel(self.context))
        return self.lineage if title == "Lineage" else self.compare if title == "Compare" else self.widget(0)

    def _place(self, title: str, view: QWidget) -> QWidget:
        index = next(i for i in range(self.count()) if self.tabText(i) == title)
        self.blockSignals(True)  # removeTab/insertTab would re-enter refresh through currentChanged
        current = self.currentIndex()
        self.removeTab(index)
        self.insertTab(index, view, title)
        self.setCurrentIndex(current)
        self.blockSignals(False)
        return view

    def refresh(self) -> None:
        """The runs changed, or another tab was shown: redraw Lineage or Compare if it is the one shown (a
        hidden one is redrawn when it is shown)."""
        title = self.tabText(self.currentIndex())
        if title in ("Lineage", "Compare"):
            self._build(title).refresh()

    def select_run(self, run_id: str | None) -> None:
        if self.lineage is not None:
            self.lineage.select_run(run_id)
