"""Curves pane: one pyqtgraph plot per metric name, the checked runs overlaid, EMA smoothing, log-y, a crosshair
read-out, and (for RL runs) a rollout browser. Thin widget over CurvesPresenter.

Large series stay fluid because every plot uses peak downsampling + clip-to-view (pyqtgraph draws ~2 points per
pixel column of the visible range, whatever the length) and live points are appended to numpy buffers in place.
"""
from __future__ import annotations

import math
import time

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QSlider, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from studio.panes.curves.presenter import CurvesPresenter
from studio.panes.curves.rollout_browser import RolloutBrowser
from studio.widgets.theme import COLORS

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
REDRAW_MS = 500
AXIS_WIDTH = 56  # px: room for "0.00125" or "1.5e+04" at the default font
SPARE_MS = 150
# 1 px: pyqtgraph then draws a curve as one path; a wider pen is stroked as line segments (QPainter.drawLines),
# 12 ms against 4 ms per paint of a panned 1,000,000-point curve (profiled offscreen).
PEN_WIDTH = 1
FLUSH_STEP_MS = 30
SPARE_PLOTS = 6  # plots built ahead while idle (a typical run logs ~6 metric names)
QUIET_S = 1.0  # spares are built only after this long without live points or a pan/zoom


def configure_plot(plot: pg.PlotItem) -> None:
    """Settings that keep a 1,000,000-point curve fluid (see module doc)."""
    plot.setDownsampling(auto=True, mode="peak")
    plot.setClipToView(True)
    # No grid: alpha-blended grid lines triple the repaint cost (measured 72 vs 29 ms CPU for six plots).
    for axis in ("left", "bottom"):  # SI prefixes re-layout the axis label on every range change
        plot.getAxis(axis).enableAutoSIPrefix(False)
    # A fixed axis width: otherwise a y tick label that gets wider ("0.9" -> "0.95") resizes the axis, which
    # re-lays out the grid and repaints every plot in it.
    plot.getAxis("left").setWidth(AXIS_WIDTH)


def nice_span(span: float) -> float:
    """The smallest 1, 2 or 5 x 10^k that is >= span."""
    k = math.floor(math.log10(span))
    for m in (1, 2, 5, 10):
        if m * 10 ** k >= span:
            return float(m * 10 ** k)
    return float(10 ** (k + 1))


class MetricPlot:
    """One metric's plot: a curve per run, a vertical crosshair and a read-out label.

    Built detached (no layout, no name) so the pane can build spares while the window is idle and only place
    them when a run's metrics arrive: building a PlotItem costs 20-70 ms (axes' HTML labels, first font use),
    placing one costs a few ms."""

    def __init__(self) -> None:
        self.name = ""
        # No pyqtgraph context menu: the pane has its own controls, and the menu's widgets are ~40 % of the
        # cost of building a plot (measured 25 vs 15 ms CPU).
        self.plot = pg.PlotItem(enableMenu=False)
        configure_plot(self.plot)
        self.plot.setLabel("bottom", "step")
        self.plot.setTitle("")
        self.legend = None
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.crosshair = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#888", style=Qt.PenStyle.DashLine))
        self.crosshair.hide()
        self.plot.addItem(self.crosshair, ignoreBounds=True)
        self.label = pg.TextItem(anchor=(0, 1), color=COLORS["text"], fill=pg.mkBrush(COLORS["panel"] + "d2"))
        self.label.hide()
        self.plot.addItem(self.label, ignoreBounds=True)
        # The x range is set by follow_x, not pyqtgraph's auto-range: auto-range moves the x axis on every
        # live redraw, and each move re-generates the axis' ticks and labels (the largest part of a repaint).
        # A user's pan/zoom hands the range back to the user.
        self.following = True
        self.plot.enableAutoRange(x=False)
        self.plot.getViewBox().sigRangeChangedManually.connect(self._stop_following)

    def _stop_following(self, *_args) -> None:
        self.following = False

    def follow_x(self, lo: float, hi: float) -> None:
        """Keep [lo, hi] in view, widening the range in steps (span x1.5 rounded up to 1/2/5·10^k) so a
        live run moves the x axis once every many redraws instead of every time."""
        if not self.following:
            return
        view_lo, view_hi = self.plot.getViewBox().viewRange()[0]
        if self.plot.getViewBox().state["autoRange"][0] is not False:
            return  # the user pressed pyqtgraph's auto-range button: pyqtgraph follows the data itself
        if lo == view_lo and hi <= view_hi:
            return
        self.plot.setXRange(lo, lo + nice_span(1.5 * max(hi - lo, 1.0)), padding=0)

    def place(self, layout: pg.GraphicsLayoutWidget, name: str, row: int, col: int, legend: bool) -> None:
        self.name = name
        self.plot.setTitle(name)
        # One legend (on the first plot) is enough: a run has the same colour in every plot.
        if legend:
            self.legend = self.plot.addLegend(offset=(-10, 10), brush=pg.mkBrush(COLORS["panel"] + "dc"),
                                              pen=pg.mkPen(COLORS["border"]), labelTextColor=COLORS["text"])
        layout.addItem(self.plot, row=row, col=col)

    def curve(self, run_id: str, label: str, color: str) -> pg.PlotDataItem:
        if run_id not in self.curves:
            self.curves[run_id] = self.plot.plot(name=label if self.legend is not None else None,
                                                 pen=pg.mkPen(color, width=PEN_WIDTH))
        return self.curves[run_id]


class CurvesPane(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        pg.setConfigOptions(antialias=False, background=COLORS["panel"], foreground=COLORS["text"])
        self.context = context
        self.presenter = CurvesPresenter(context, self)
        self.plots: dict[str, MetricPlot] = {}
        self.sections: dict[str, pg.LabelItem] = {}  # section title -> its title row (group_metrics)
        self._placed: list[tuple[str, str]] = []  # (section, name) of each placed plot, in grid order
        self._cursor: tuple[int, int, str | None] = (0, 0, None)  # next row, next column, section of the last plot
        self.colors: dict[str, str] = {}
        self._pending: list[str] = []
        self._built: tuple = ()
        self._built_runs: list[str] = []
        self._spares: list[MetricPlot] = []
        self._queue: list[list] = []  # dirty curves grouped by plot, drawn one plot per event-loop pass
        self._last_activity = 0.0  # time.monotonic() of the last live points or view range change

        self.run_list = QListWidget()
        self.run_list.itemChanged.connect(self._on_runs_checked)
        self.name_list = QListWidget()
        self.name_list.itemChanged.connect(self._on_name_checked)
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing_label = QLabel("Smoothing: 0.00")
        self.smoothing.valueChanged.connect(self._on_smoothing)
        self.log_y = QCheckBox("Log scale (y)")
        self.log_y.toggled.connect(self.presenter.set_log_y)
        # A metric that never changes (a dense model's aux_loss) would take a plot to draw a flat line.
        self.show_constant = QCheckBox("Show constant metrics")
        self.show_constant.toggled.connect(self.presenter.set_show_constant)
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        for widget in (QLabel("Runs (overlay)"), self.run_list, QLabel("Metrics"), self.name_list,
                       self.show_constant, self.smoothing_label, self.smoothing, self.log_y):
            sl.addWidget(widget)
        side.setMaximumWidth(300)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.rollouts = RolloutBrowser()
        self.samples = self.rollouts.table  # the list of rollouts (tests and scripts/screenshots.py read it)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.graphics, "Plots")
        self.tabs.addTab(self.rollouts, "Rollouts")

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(side)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(1, 1)
        layout = QHBoxLayout(self)
        layout.addWidget(splitter)

        self.presenter.namesChanged.connect(self._on_names)
        # Laid out on the next event-loop pass, not inside the batch of events that changed the names: the two
        # together made one long stall (bench.ui_stall), and several changes in one pass lay out once.
        self._relayout = QTimer(self)
        self._relayout.setSingleShot(True)
        self._relayout.setInterval(0)
        self._relayout.timeout.connect(self.rebuild_plots)
        self.presenter.layoutChanged.connect(self._relayout.start)
        # Live points are drawn at most every REDRAW_MS and only while the pane is visible: a repaint of the
        # plot grid costs tens of ms, the event loop must stay free for the rest of the window.
        self._dirty: set = set()
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.flush)
        self.presenter.seriesChanged.connect(self._mark_dirty)
        self.presenter.samplesAdded.connect(self._append_samples)
        # A child timer (not QTimer.singleShot) so nothing fires into a deleted pane.
        self._spare_timer = QTimer(self)
        # Spaced out, so a spare built while a run streams never lands in the same pass as a repaint.
        self._spare_timer.setInterval(SPARE_MS)
        self._spare_timer.timeout.connect(self._build_spare)
        self._spare_timer.start()
        self._flush_timer = QTimer(self)
        self._flush_timer.setInterval(FLUSH_STEP_MS)  # room for the previous plot's repaint in between
        self._flush_timer.timeout.connect(self._flush_next)
        self.refresh_runs()
        if context.selected_run_id:
            self.show_run(context.selected_run_id)

    # ------------------------------------------------------------------ runs
    def refresh_runs(self) -> None:
        store = self.context.store
        checked = set(self.presenter.runs)
        self.run_list.blockSignals(True)
        self.run_list.clear()
        for run in store.list_runs():
            item = QListWidgetItem(f"{run.name}  ·  {run.status}")
            item.setData(Qt.ItemDataRole.UserRole, run.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if run.id in checked else Qt.CheckState.Unchecked)
            self.run_list.addItem(item)
        self.run_list.blockSignals(False)

    def show_run(self, run_id: str) -> None:
        """Add a run to the overlay (the selected run lands here)."""
        if run_id and run_id not in self.presenter.runs:
            self.presenter.set_runs(self.presenter.runs + [run_id])
            self.refresh_runs()
            self._load_samples()

    def _on_runs_checked(self, _item) -> None:
        runs = [self.run_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.run_list.count())
                if self.run_list.item(i).checkState() == Qt.CheckState.Checked]
        self.presenter.set_runs(runs)
        self._load_samples()

    # ----------------------------------------------------------------- plots
    def _on_names(self, names: list) -> None:
        self.name_list.blockSignals(True)
        self.name_list.clear()
        for name in names:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if name in self.presenter.hidden else Qt.CheckState.Checked)
            self.name_list.addItem(item)
        self.name_list.blockSignals(False)
        constant = sorted(self.presenter.constant)
        self.show_constant.setText(f"Show constant metrics ({len(constant)})")
        self.show_constant.setToolTip(", ".join(constant) or "No metric of the shown runs is constant")

    def _on_name_checked(self, item) -> None:
        self.presenter.set_visible(item.text(), item.checkState() == Qt.CheckState.Checked)

    def _color(self, run_id: str) -> str:
        if run_id not in self.colors:
            self.colors[run_id] = PALETTE[len(self.colors) % len(PALETTE)]
        return self.colors[run_id]

    def rebuild_plots(self) -> None:
        """One labelled section per metric group (training, reward, eval, system: ``group_metrics``), each a
        title row over its plots in 2 columns. New metric names of a live run that go after the plots already
        placed only add plots; anything else (a name of an earlier section, toggles, log scale, fewer runs) lays
        the grid out again, which happens once when, say, system metrics arrive before the first loss."""
        order = [(section, name) for section, names in self.presenter.visible_sections() for name in names]
        same_shape = order[:len(self._placed)] == self._placed and self._built == (self.presenter.log_y,
                                                                                   self._runs_key())
        if not same_shape or any(run not in self.presenter.runs for run in self._built_runs):
            self.graphics.clear()
            self.plots, self.sections, self._placed, self._cursor = {}, {}, [], (0, 0, None)
        self._built = (self.presenter.log_y, self._runs_key())
        self._built_runs = list(self.presenter.runs)
        self._pending = [item for item in order if item[1] not in self.plots]
        self._add_pending_plots()
        self.update_series([k for k in self.presenter.buffers if k[1] in self.plots])

    def _runs_key(self) -> tuple:
        return tuple(sorted(self.presenter.runs))

    def _build_spare(self) -> None:
        """One spare plot per event-loop pass until SPARE_PLOTS are ready, while no run streams and nobody pans:
        a spare costs 10-20 ms of UI-thread CPU, which on top of a redraw made the longest stall (bench.ui_stall)."""
        if time.monotonic() - self._last_activity < QUIET_S:
            return
        if len(self._spares) < SPARE_PLOTS:
            self._spares.append(MetricPlot())
        if len(self._spares) >= SPARE_PLOTS:
            self._spare_timer.stop()

    def _add_pending_plots(self) -> None:
        """Place one plot per event-loop pass (a spare if one is ready): six new plots at once would freeze
        the window for a visible moment when a run's first metrics arrive."""
        if not self._pending:
            return
        section, name = self._pending.pop(0)
        row, col = self._next_cell(section)
        plot = self._spares.pop(0) if self._spares else MetricPlot()
        plot.place(self.graphics, name, row, col, legend=not self.plots)
        self._placed.append((section, name))
        plot.plot.getViewBox().sigRangeChanged.connect(self._note_activity)
        plot.plot.setLogMode(y=self.presenter.log_y)
        self.plots[name] = plot
        self.update_series([(run_id, name) for run_id in self.presenter.curves_for(name)])
        if self._pending:
            QTimer.singleShot(0, self._add_pending_plots)
        elif not self._spare_timer.isActive():
            self._spare_timer.start()  # refill while idle for the next run's plots

    def _next_cell(self, section: str) -> tuple[int, int]:
        """(row, col) for the next plot of ``section``; a new section starts on a new row under its title."""
        row, col, current = self._cursor
        if section != current:
            if col:
                row, col = row + 1, 0
            title = pg.LabelItem(section, justify="left", color=COLORS["muted"], bold=True)
            self.graphics.addItem(title, row=row, col=0, colspan=2)
            self.sections[section] = title
            row += 1
        self._cursor = (row + col, (col + 1) % 2, section)  # two plots a row
        return row, col

    def update_series(self, keys: list) -> None:
        names = set()
        for run_id, name in keys:
            plot = self.plots.get(name)
            if plot is None:
                continue
            x, y = self.presenter.series(run_id, name)
            plot.curve(run_id, self.presenter.run_label(run_id), self._color(run_id)).setData(x, y)
            names.add(name)
        for name in names:
            # The x extent of every shown run, not only the updated ones, so an overlay never cuts a run off.
            ends = [x[[0, -1]] for x, _y in (self.presenter.series(r, name) for r in self.presenter.curves_for(name))
                    if x.size]
            if ends:
                self.plots[name].follow_x(float(min(e[0] for e in ends)), float(max(e[1] for e in ends)))

    def _note_activity(self, *_args) -> None:
        self._last_activity = time.monotonic()

    def _mark_dirty(self, keys: list) -> None:
        self._note_activity()
        self._dirty.update(keys)
        if self.isVisible() and not self._redraw.isActive():
            self._redraw.start()

    def flush(self) -> None:
        """Draw the points that arrived since the last redraw, one plot per event-loop pass: a repaint of
        the whole grid after a single setData costs ~50 ms, one plot's repaint ~8 ms."""
        keys, self._dirty = self._dirty, set()
        by_plot: dict[str, list] = {}
        for key in keys:
            by_plot.setdefault(key[1], []).append(key)
        self._queue.extend(by_plot.values())
        self._flush_next()

    def _flush_next(self) -> None:
        if self._queue:
            self.update_series(self._queue.pop(0))
        if self._queue:
            self._flush_timer.start()
        else:
            self._flush_timer.stop()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().showEvent(event)
        if self._dirty:
            self._redraw.start()

    def _on_smoothing(self, value: int) -> None:
        self.smoothing_label.setText(f"Smoothing: {value / 100:.2f}")
        self.presenter.set_smoothing(value / 100)

    def _on_mouse_moved(self, pos) -> None:
        for plot in self.plots.values():
            vb = plot.plot.getViewBox()
            if not plot.plot.sceneBoundingRect().contains(pos):
                plot.crosshair.hide()
                plot.label.hide()
                continue
            point = vb.mapSceneToView(pos)
            rows = self.presenter.readout(plot.name, point.x())
            if not rows:
                continue
            plot.crosshair.setPos(rows[0][1])
            plot.crosshair.show()
            text = "\n".join(f"{self.presenter.run_label(r)} · step {s}: {v:.5g}" for r, s, v in rows)
            plot.label.setText(text)
            plot.label.setPos(point.x(), point.y())
            plot.label.show()

    # -------------------------------------------------------------- rollouts
    def _load_samples(self) -> None:
        self.rollouts.clear()
        rows = []
        for run_id in self.presenter.runs:
            rows += self.presenter.samples(run_id)
        self._append_samples(rows)

    def _append_samples(self, rows: list) -> None:
        self.rollouts.append(rows)
        if rows:
            self.tabs.setTabText(1, f"Rollouts ({self.samples.rowCount()})")
