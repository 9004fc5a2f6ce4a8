"""Lineage view: the workspace's runs as a graph (QGraphicsView). A run is a box coloured by status; arrows carry
the checkpoint a child started from; exports and evaluations hang off their run. Clicking a box selects that run
everywhere (``context.select_run``). Drawing only: the graph and its layout are studio/panes/runs/lineage_presenter.py.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (QGraphicsPathItem, QGraphicsRectItem, QGraphicsScene, QGraphicsSimpleTextItem,
                               QGraphicsView, QWidget)

from studio.panes.runs.lineage_presenter import layout, lineage_graph
from studio.widgets.theme import COLORS

BOX_W, BOX_H = 210, 44  # under lineage_presenter.COLUMN (230): a gap between columns
TEXT_PAD = 8
EDGE_STYLES = {"init": Qt.PenStyle.SolidLine, "parent": Qt.PenStyle.DashLine, "export": Qt.PenStyle.DotLine,
               "eval": Qt.PenStyle.DotLine, "sweep": Qt.PenStyle.DashDotLine}
LEAF_FILL = {"export": "#eef2ff", "eval": "#f0fdf4", "sweep": "#fff7ed"}


class _NodeItem(QGraphicsRectItem):
    def __init__(self, node, status_color: str) -> None:
        super().__init__(0, 0, BOX_W, BOX_H)
        self.node = node
        fill = LEAF_FILL.get(node.kind, COLORS["panel"])
        self.setBrush(QBrush(QColor(fill)))
        self.setPen(QPen(QColor(status_color if node.kind == "run" else COLORS["border"]), 2))
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"{node.label}\n{node.detail}")
        bold = QFont()
        bold.setBold(True)
        for text, y, font, colour in ((node.label, 5, bold, COLORS["text"]), (node.detail, 24, QFont(), COLORS["muted"])):
            item = QGraphicsSimpleTextItem(_elide(text, font), self)
            item.setFont(font)
            item.setBrush(QBrush(QColor(colour)))
            item.setPos(TEXT_PAD, y)

    def set_selected(self, on: bool) -> None:
        self.setBrush(QBrush(QColor(COLORS["accent_soft"] if on else LEAF_FILL.get(self.node.kind, COLORS["panel"]))))


def _elide(text: str, font: QFont) -> str:
    """Cut to the box's width in pixels (a count of characters let bold labels run past the border)."""
    return QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideRight, BOX_W - 2 * TEXT_PAD)


class LineageView(QGraphicsView):
    """``refresh()`` redraws from the store; ``select_run(run_id)`` highlights; clicks select runs everywhere."""

    nodeClicked = Signal(str)  # run_id

    def __init__(self, context, status_colors: dict[str, str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.status_colors = status_colors
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.items_by_run: dict[str, _NodeItem] = {}
        self.graph = None

    def refresh(self) -> None:
        scene = self.scene()
        scene.clear()
        self.items_by_run = {}
        self.graph = graph = lineage_graph(self.context.store)
        positions = layout(graph)
        items = {}
        for node_id, node in graph.nodes.items():
            item = items[node_id] = _NodeItem(node, self.status_colors.get(node.status, COLORS["border"]))
            item.setPos(*positions[node_id])
            scene.addItem(item)
            if node.kind == "run":
                self.items_by_run[node.run_id] = item
        for edge in graph.edges:
            if edge.source == edge.target:
                continue  # a resume: written on the node
            self._draw_edge(items[edge.source], items[edge.target], edge)
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-12, -12, 12, 12))
        self.select_run(self.context.selected_run_id)

    def _draw_edge(self, source: _NodeItem, target: _NodeItem, edge) -> None:
        """An elbow from the bottom-left of the parent down and right into the child's left side, with the
        checkpoint name on the horizontal leg."""
        start = source.pos() + QPointF(18, BOX_H)
        end = target.pos() + QPointF(0, BOX_H / 2)
        path = QPainterPath(start)
        path.lineTo(start.x(), end.y())
        path.lineTo(end)
        line = QGraphicsPathItem(path)
        line.setPen(QPen(QColor(COLORS["muted"]), 1.4, EDGE_STYLES.get(edge.kind, Qt.PenStyle.SolidLine)))
        line.setZValue(-1)
        self.scene().addItem(line)
        if edge.label:
            label = QGraphicsSimpleTextItem(edge.label)
            label.setBrush(QBrush(QColor(COLORS["muted"])))
            small = QFont()
            small.setPointSizeF(7.5)
            label.setFont(small)
            label.setPos(start.x() + 4, end.y() - 15)
            self.scene().addItem(label)

    def select_run(self, run_id: str | None) -> None:
        for rid, item in self.items_by_run.items():
            item.set_selected(rid == run_id)
        if run_id in self.items_by_run:
            self.ensureVisible(self.items_by_run[run_id])

    def node_at(self, pos) -> _NodeItem | None:
        item = self.itemAt(pos)
        while item is not None and not isinstance(item, _NodeItem):
            item = item.parentItem()
        return item

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt name)
        item = self.node_at(event.position().toPoint())
        if item is not None and item.node.run_id:
            self.click(item.node.run_id)
        super().mousePressEvent(event)

    def click(self, run_id: str) -> None:
        """What a click on a run's box (or its export/evaluation) does: select the run in every pane."""
        self.select_run(run_id)
        self.nodeClicked.emit(run_id)
        self.context.select_run(run_id)

    def node_rect(self, run_id: str) -> QRect:
        """The run's box in view coordinates (tests click it)."""
        item = self.items_by_run[run_id]
        return self.mapFromScene(item.sceneBoundingRect()).boundingRect()
