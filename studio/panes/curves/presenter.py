"""Curves pane logic: per-(run, metric) numpy buffers that grow in place, EMA smoothing, hover read-out and the
RL rollout list. No widgets here; the pane draws what ``series()`` returns.

Buffers double their capacity when full (amortised O(1) appends), so a live run adds points without copying
the history; ``series()`` returns views, never copies.
"""
from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QObject, Signal


def ema(values: np.ndarray, weight: float, state: tuple[float, int] = (0.0, 0)) -> tuple[np.ndarray, tuple[float, int]]:
    """Debiased exponential moving average, TensorBoard's smoothing: s_t = w·s_{t-1} + (1-w)·x_t, shown as
    s_t / (1 - w^(t+1)) so the first points are not pulled towards 0 (Kingma & Ba 2015, Adam, eq. in §3).

    Vectorised per chunk with the closed form s_i = w^(i+1)·s_prev + (1-w)·w^i·Σ_{j<=i} w^(-j)·x_j; the chunk
    length keeps w^(-j) below 1e100 so nothing overflows. ``state`` = (s_prev, points seen) continues a series.
    """
    x = np.asarray(values, dtype=np.float64)
    s_prev, seen = state
    if weight <= 0.0 or x.size == 0:
        return x.copy(), (float(x[-1]) if x.size else s_prev, seen + x.size)
    log_w = math.log(weight)
    chunk = int(max(1, min(4096, math.floor(100 * math.log(10) / -log_w))))
    out = np.empty_like(x)
    for start in range(0, x.size, chunk):
        xs = x[start:start + chunk]
        i = np.arange(xs.size, dtype=np.float64)
        w_i = np.exp(i * log_w)
        s = weight * w_i * s_prev + (1.0 - weight) * w_i * np.cumsum(xs * np.exp(-i * log_w))
        t = seen + start + i  # global index of each point
        out[start:start + chunk] = s / (1.0 - np.exp((t + 1) * log_w))
        s_prev = float(s[-1])
    return out, (s_prev, seen + x.size)


CONSTANT_AFTER = 5  # points


class SeriesBuffer:
    """x (steps) and y (values) of one curve, raw and smoothed, appended in place."""

    def __init__(self, capacity: int = 1024) -> None:
        self.x = np.empty(capacity, np.float64)
        self.y = np.empty(capacity, np.float64)
        self.smooth = np.empty(capacity, np.float64)
        self.n = 0
        self.weight = 0.0
        self._state = (0.0, 0)
        self.varies = False  # two points differ (NaN counts as different): a constant series stays False

    @property
    def constant(self) -> bool:
        """CONSTANT_AFTER or more points, all equal (``aux_loss`` of a dense model, a fixed ``lr``). Fewer are
        not constant yet: an eval metric logged once is worth a plot, and a loss whose first two points are
        equal must not lose its plot and get it back a moment later."""
        return self.n >= CONSTANT_AFTER and not self.varies

    def _grow(self, need: int) -> None:
        cap = self.x.size
        if need <= cap:
            return
        while cap < need:
            cap *= 2
        for name in ("x", "y", "smooth"):
            old = getattr(self, name)
            new = np.empty(cap, np.float64)
            new[:self.n] = old[:self.n]
            setattr(self, name, new)

    def append(self, xs, ys) -> None:
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        end = self.n + xs.size
        self._grow(end)
        if xs.size and not self.varies:
            first = self.y[0] if self.n else ys[0]
            self.varies = bool(np.any(ys != first))
        self.x[self.n:end], self.y[self.n:end] = xs, ys
        self.smooth[self.n:end], self._state = ema(ys, self.weight, self._state)
        self.n = end

    def set_smoothing(self, weight: float) -> None:
        self.weight = weight
        self.smooth[:self.n], self._state = ema(self.y[:self.n], weight)

    def view(self, smoothed: bool) -> tuple[np.ndarray, np.ndarray]:
        return self.x[:self.n], (self.smooth if smoothed else self.y)[:self.n]


class CurvesPresenter(QObject):
    # Metric names listed for the shown runs changed (constant ones only with ``show_constant``).
    namesChanged = Signal(list)
    # Curves to (re)draw: list of (run_id, name); the pane calls series() for each.
    seriesChanged = Signal(list)
    # Runs or visible names changed: rebuild the plot layout.
    layoutChanged = Signal()
    # New RL rollouts for a shown run: list of sample rows.
    samplesAdded = Signal(list)

    def __init__(self, context, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.buffers: dict[tuple[str, str], SeriesBuffer] = {}
        self.runs: list[str] = []
        self.names: list[str] = []          # every metric name of the shown runs
        self.hidden: set[str] = set()        # names toggled off
        self.show_constant = False           # constant metrics (see SeriesBuffer.constant) hidden unless asked
        self.constant: set[str] = set()      # names constant in every shown run that logs them
        self._listed: tuple = ()
        self.smoothing = 0.0
        self.log_y = False
        self._labels: dict[str, str] = {}

    # --------------------------------------------------------------- runs
    def set_runs(self, run_ids: list[str]) -> None:
        """Show these runs (overlaid); history is loaded once from the store, then grows from live events."""
        self.runs = list(dict.fromkeys(run_ids))
        for key in [k for k in self.buffers if k[0] not in self.runs]:
            del self.buffers[key]
        store = self.context.store
        for run_id in self.runs:
            if any(k[0] == run_id for k in self.buffers):
                continue
            for name in store.metric_names(run_id):
                steps, values = store.metric_series(run_id, name)
                self._buffer(run_id, name).append(steps, values)
        self._update_names()
        self.layoutChanged.emit()

    def add_series(self, run_id: str, name: str, steps, values) -> None:
        """Append points to a curve directly (live events use this too)."""
        if run_id not in self.runs:
            self.runs.append(run_id)
        self._buffer(run_id, name).append(steps, values)
        if name not in self.names or self._constant_changed():
            self._update_names()
            self.layoutChanged.emit()
        else:
            self.seriesChanged.emit([(run_id, name)])

    def _constant_changed(self) -> bool:
        """Recompute ``constant``; True when a name joined or left it (the plots must be laid out again)."""
        by_name: dict[str, bool] = {}
        for (_run, name), buf in self.buffers.items():
            by_name[name] = by_name.get(name, True) and buf.constant
        constant = {name for name, flag in by_name.items() if flag}
        changed, self.constant = constant != self.constant, constant
        return changed

    def _buffer(self, run_id: str, name: str) -> SeriesBuffer:
        key = (run_id, name)
        if key not in self.buffers:
            self.buffers[key] = SeriesBuffer()
            self.buffers[key].weight = self.smoothing
        return self.buffers[key]

    def _update_names(self) -> None:
        """Names in order of first appearance (new plots go at the end, so a live run never reshuffles the
        layout); the list of names the user toggles is sorted instead (see ``sorted_names``)."""
        names = list(dict.fromkeys([n for n in self.names if any(k[1] == n for k in self.buffers)] +
                                   sorted({name for _run, name in self.buffers}, key=_name_order)))
        self._constant_changed()
        self.names = names
        listed = self.sorted_names()
        if (listed, self.constant) != self._listed:  # the pane also shows how many are constant
            self._listed = (listed, set(self.constant))
            self.namesChanged.emit(listed)

    def sorted_names(self) -> list[str]:
        """The names to list (and plot unless toggled off): constant ones only with ``show_constant``."""
        return sorted((n for n in self.names if self.show_constant or n not in self.constant), key=_name_order)

    def on_events(self, run_id: str, events: list) -> None:
        """Live events of a run (``context.eventsIngested``): append metric points of shown runs in one pass per
        batch."""
        if run_id not in self.runs:
            return
        points: dict[str, tuple[list, list]] = {}
        samples = []
        for ev in events:
            if ev.get("type") in ("metric", "eval"):
                for name, value in (ev.get("metrics") or {}).items():
                    if isinstance(value, (int, float)):
                        xs, ys = points.setdefault(name, ([], []))
                        xs.append(ev.get("step", 0))
                        ys.append(value)
            elif ev.get("type") == "sample":
                samples += [dict(s, step=ev.get("step", 0)) for s in ev.get("samples") or []]
        new_names = [n for n in points if (run_id, n) not in self.buffers]
        for name, (xs, ys) in points.items():
            self._buffer(run_id, name).append(xs, ys)
        if new_names or (points and self._constant_changed()):
            self._update_names()
            self.layoutChanged.emit()
        elif points:
            self.seriesChanged.emit([(run_id, n) for n in points])
        if samples:
            self.samplesAdded.emit(samples)

    # ------------------------------------------------------------- options
    def visible_names(self) -> list[str]:
        """Names with a plot, in order of first appearance."""
        return [n for n in self.names if n not in self.hidden and (self.show_constant or n not in self.constant)]

    def visible_sections(self) -> list[tuple[str, list[str]]]:
        """The plots as the grid shows them: (section, names), training first (``group_metrics``)."""
        return group_metrics(self.visible_names())

    def set_show_constant(self, on: bool) -> None:
        self.show_constant = on
        self._update_names()
        self.layoutChanged.emit()

    def set_visible(self, name: str, visible: bool) -> None:
        (self.hidden.discard if visible else self.hidden.add)(name)
        self.layoutChanged.emit()

    def set_smoothing(self, weight: float) -> None:
        self.smoothing = min(max(weight, 0.0), 0.999)
        for buf in self.buffers.values():
            buf.set_smoothing(self.smoothing)
        self.seriesChanged.emit(list(self.buffers))

    def set_log_y(self, on: bool) -> None:
        self.log_y = on
        self.layoutChanged.emit()

    def series(self, run_id: str, name: str) -> tuple[np.ndarray, np.ndarray]:
        buf = self.buffers.get((run_id, name))
        if buf is None:
            return np.empty(0), np.empty(0)
        return buf.view(smoothed=self.smoothing > 0)

    def curves_for(self, name: str) -> list[str]:
        return [run_id for run_id in self.runs if (run_id, name) in self.buffers]

    def readout(self, name: str, step: float) -> list[tuple[str, int, float]]:
        """(run, step, value) of each shown run's point nearest to ``step`` on the plot of ``name``."""
        out = []
        for run_id in self.curves_for(name):
            x, y = self.series(run_id, name)
            if x.size == 0:
                continue
            i = int(np.clip(np.searchsorted(x, step), 1, x.size - 1)) if x.size > 1 else 0
            if x.size > 1 and abs(x[i - 1] - step) <= abs(x[i] - step):
                i -= 1
            out.append((run_id, int(x[i]), float(y[i])))
        return out

    def samples(self, run_id: str, limit: int = 500) -> list[dict]:
        return self.context.store.samples(run_id, limit=limit)

    def run_label(self, run_id: str) -> str:
        if run_id not in self._labels:  # asked per curve per redraw: one query per run, not per frame
            run = self.context.store.get_run(run_id)
            self._labels[run_id] = run.name if run is not None and run.name else run_id
        return self._labels[run_id]


# Sections of the Curves grid, in display order, as the common trackers group them: training first, then
# RL/preference (TRL's metric family), then evaluation, then the machine. A metric belongs to the first section one
# of whose words is its name's first "/"-separated word ("kl" matches "kl" and "kl/..."); every other metric is a
# training metric. The one place these rules live.
TRAINING = "Training"
METRIC_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Reward", ("reward", "rewards", "advantages", "kl", "rl")),
    ("Eval", ("eval",)),
    ("System", ("system",)),
)
SECTION_ORDER = (TRAINING,) + tuple(title for title, _words in METRIC_SECTIONS)


def metric_section(name: str) -> str:
    """The section of the Curves grid a metric name belongs to (see METRIC_SECTIONS)."""
    head = name.split("/", 1)[0]
    return next((title for title, words in METRIC_SECTIONS if head in words), TRAINING)


def group_metrics(names: list[str]) -> list[tuple[str, list[str]]]:
    """(section, names) for the sections that have names, in SECTION_ORDER; names keep their order inside."""
    groups: dict[str, list[str]] = {title: [] for title in SECTION_ORDER}
    for name in names:
        groups[metric_section(name)].append(name)
    return [(title, members) for title, members in groups.items() if members]


def _name_order(name: str) -> tuple:
    """By section (training first), loss first, then plain names before namespaced ones, then alphabetically."""
    return (SECTION_ORDER.index(metric_section(name)), name != "loss", "/" in name, name)
