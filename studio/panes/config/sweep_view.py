"""The sweep dialog (Config › Sweep…): "New sweep" defines parameters over the current config and starts it;
"Trials" shows a sweep's trials against their objective and the parameters' importance from Optuna's own
analysis (`optuna.importance.get_param_importances`). Drawing only: sweep_presenter.py beside it holds the logic.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLineEdit,
                               QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QTabWidget, QVBoxLayout,
                               QWidget)

from studio.panes.config.sweep_presenter import ParamRow, SweepPresenter, build_spec, suggest_row
from studio.widgets.common import label, primary_button
from studio.widgets.theme import COLORS

STATE_COLORS = {"COMPLETE": "ok", "PRUNED": "warn", "FAIL": "bad", "RUNNING": "accent", "WAITING": "muted"}
PARAM_KINDS = ("int", "float", "enum", "bool")  # fields a sweep can vary
REFRESH_MS = 2000


class SweepView(QWidget):
    """One sweep: a plot of each trial's objective (best so far as a line), the trials, the importances."""

    def __init__(self, presenter: SweepPresenter, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        import pyqtgraph as pg  # imported when the dialog is first built, as the Curves pane does

        self.presenter = presenter
        self.summary = None
        v = QVBoxLayout(self)
        bar = QHBoxLayout()
        self.picker = QComboBox()
        self.picker.setMinimumWidth(320)
        self.picker.currentIndexChanged.connect(lambda _i: self.refresh())
        refresh_btn, self.stop_btn = QPushButton("Refresh"), QPushButton("Stop sweep")
        refresh_btn.clicked.connect(self.refresh)
        self.stop_btn.clicked.connect(self._stop)
        for w in (label("Sweep"), self.picker, refresh_btn, self.stop_btn):
            bar.addWidget(w)
        bar.addStretch(1)
        v.addLayout(bar)
        self.header = label("", "muted")
        v.addWidget(self.header)
        self.plot = pg.PlotWidget(background=COLORS["panel"])
        self.plot.setLabel("bottom", "trial")
        self.plot.setMinimumHeight(180)
        self.scatter = pg.ScatterPlotItem(size=9)
        self.best_line = self.plot.plot([], [], pen=pg.mkPen(COLORS["accent"], width=1.5))
        self.plot.addItem(self.scatter)
        v.addWidget(self.plot, 2)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        v.addWidget(self.table, 2)
        v.addWidget(label("Parameter importance (optuna.importance.get_param_importances)", "muted"))
        self.importance = QTableWidget(0, 2)
        self.importance.setHorizontalHeaderLabels(["parameter", "importance"])
        self.importance.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.importance.horizontalHeader().setStretchLastSection(True)
        v.addWidget(self.importance, 1)
        self.importance_note = label("", "muted")
        v.addWidget(self.importance_note)
        presenter.summaryReady.connect(self.show_summary)
        presenter.failed.connect(lambda m: self.header.setText(f"Cannot read the sweep: {m}"))
        self._timer = QTimer(self, interval=REFRESH_MS)  # while a sweep process runs: new trials, new values
        self._timer.timeout.connect(self._tick)

    def reload_sweeps(self, select: Path | None = None) -> None:
        self.picker.blockSignals(True)
        self.picker.clear()
        for path in self.presenter.sweep_dirs():
            self.picker.addItem(path.name, str(path))
        if select is not None:
            self.picker.addItem(Path(select).name, str(select)) if self.picker.findData(str(select)) < 0 else None
            self.picker.setCurrentIndex(self.picker.findData(str(select)))
        self.picker.blockSignals(False)
        self.refresh()

    def current_dir(self) -> Path | None:
        data = self.picker.currentData()
        return Path(data) if data else None

    def refresh(self) -> None:
        sweep_dir = self.current_dir()
        if sweep_dir is None:
            self.header.setText("No sweep yet: define one in New sweep.")
            return
        running = self.presenter.running_pid(sweep_dir) is not None
        self.stop_btn.setEnabled(running)
        if running or (sweep_dir / "study.db").is_file():
            self.presenter.load(sweep_dir)
        if running and not self._timer.isActive():
            self._timer.start()

    def _tick(self) -> None:
        sweep_dir = self.current_dir()
        if sweep_dir is None or self.presenter.running_pid(sweep_dir) is None:
            self._timer.stop()
        self.refresh()

    def _stop(self) -> None:
        if self.current_dir() is not None:
            self.presenter.stop(self.current_dir())

    # ---- drawing ---------------------------------------------------------------------------------------
    def show_summary(self, summary) -> None:
        import pyqtgraph as pg

        self.summary = summary
        best = (f"best: trial {summary.best.number}, {summary.metric} {summary.best.value:.4g}"
                if summary.best is not None else "no finished trial yet")
        counts = ", ".join(f"{summary.count(s)} {s.lower()}" for s in STATE_COLORS if summary.count(s))
        self.header.setText(f"{summary.id} · {summary.metric} ({summary.direction}) · "
                            f"{len(summary.trials)}/{summary.n_trials} trials: {counts or 'none'} · {best}")
        self.plot.setLabel("left", summary.metric)
        points = [t for t in summary.trials if t.shown_value is not None]
        self.scatter.setData([{"pos": (t.number, t.shown_value), "brush": pg.mkBrush(COLORS[STATE_COLORS[t.state]]),
                               "data": t.number} for t in points])
        xs, ys, running = [], [], None
        for t in points:
            if t.state != "COMPLETE" or t.value is None:
                continue
            pick = min if summary.direction == "minimize" else max
            running = t.value if running is None else pick(running, t.value)
            xs.append(t.number)
            ys.append(running)
        self.best_line.setData(xs, ys)
        self._fill_trials(summary)
        self.importance.setRowCount(len(summary.importances))
        for row, (name, share) in enumerate(summary.importances.items()):
            self.importance.setItem(row, 0, QTableWidgetItem(name))
            self.importance.setItem(row, 1, QTableWidgetItem(f"{share:.3f}  {'█' * max(1, round(share * 20))}"))
        self.importance_note.setText(summary.importance_note)

    def _fill_trials(self, summary) -> None:
        names = sorted({k for t in summary.trials for k in t.params})
        heads = ["trial", "state", summary.metric or "value", "step"] + names + ["run", "note"]
        self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)
        self.table.setRowCount(len(summary.trials))
        for row, t in enumerate(summary.trials):
            cells = [str(t.number), t.state.lower(), "" if t.shown_value is None else f"{t.shown_value:.4g}",
                     "" if t.last_step is None else str(t.last_step)]
            cells += [_cell(t.params.get(n)) for n in names] + [Path(t.run_dir).name if t.run_dir else "", t.reason]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setForeground(Qt.GlobalColor.black if t.state == "WAITING" else _qcolor(t.state))
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()


def _qcolor(state: str):
    from PySide6.QtGui import QColor

    return QColor(COLORS[STATE_COLORS.get(state, "muted")])


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)


class SweepForm(QWidget):
    """Parameters over the current config (field, type, range or choices), sampler, trials, objective, start."""

    COLUMNS = ("field", "type", "low", "high", "log", "choices")

    def __init__(self, presenter: SweepPresenter, fields: list, config: dict, parent: QWidget | None = None):
        super().__init__(parent)
        self.presenter, self.config = presenter, config
        self.fields = {spec.key: spec for spec in fields if spec.kind in PARAM_KINDS}
        v = QVBoxLayout(self)
        v.addWidget(label("Each trial is an ordinary run of the current config with these fields set; the trials "
                          "run one after another (or several at once, one per GPU) and a stopped sweep resumes.",
                          "muted"))
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        v.addWidget(self.table, 1)
        row_bar = QHBoxLayout()
        self.field_box = QComboBox()
        self.field_box.addItems(sorted(self.fields))
        add_btn, remove_btn = QPushButton("Add parameter"), QPushButton("Remove")
        add_btn.clicked.connect(lambda: self.add_param(self.field_box.currentText()))
        remove_btn.clicked.connect(lambda: self.table.removeRow(self.table.currentRow()))
        for w in (self.field_box, add_btn, remove_btn):
            row_bar.addWidget(w)
        row_bar.addStretch(1)
        v.addLayout(row_bar)
        form = QFormLayout()
        self.name = QLineEdit(f"{config.get('method', 'run')}-sweep")
        self.sampler = QComboBox()
        self.sampler.addItems(["tpe", "random", "grid"])
        self.n_trials = QSpinBox(minimum=1, maximum=10000, value=8)
        has_eval = bool((config.get("data") or {}).get("eval_files")) and bool(config.get("eval_every"))
        self.metric = QLineEdit("eval/loss" if has_eval else "loss")
        self.direction = QComboBox()
        self.direction.addItems(["minimize", "maximize"])
        self.pruner = QComboBox()
        self.pruner.addItems(["median", "hyperband", "none"])
        self.parallel = QSpinBox(minimum=1, maximum=64, value=1)
        for text, w in (("Name", self.name), ("Sampler", self.sampler), ("Trials", self.n_trials),
                        ("Objective metric", self.metric), ("Direction", self.direction), ("Pruner", self.pruner),
                        ("Trials at once", self.parallel)):
            form.addRow(text, w)
        v.addLayout(form)
        self.errors = label("", "error")
        v.addWidget(self.errors)
        self.start_btn = primary_button("Start sweep")
        v.addWidget(self.start_btn, 0, Qt.AlignmentFlag.AlignRight)

    def add_param(self, key: str) -> None:
        spec = self.fields[key]
        value = self.config
        for part in spec.path:
            value = value.get(part) if isinstance(value, dict) else None
        self._add_row(suggest_row(key, spec.kind, value, list(spec.choices)))

    def _add_row(self, row: ParamRow) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setItem(r, 0, QTableWidgetItem(row.field))
        kind = QComboBox()
        kind.addItems(["float", "int", "categorical"])
        kind.setCurrentText(row.type)
        self.table.setCellWidget(r, 1, kind)
        for col, number in ((2, row.low), (3, row.high)):
            box = QDoubleSpinBox(decimals=8, minimum=-1e12, maximum=1e12, value=number)
            self.table.setCellWidget(r, col, box)
        log = QCheckBox()
        log.setChecked(row.log)
        self.table.setCellWidget(r, 4, log)
        self.table.setItem(r, 5, QTableWidgetItem(row.choices))

    def rows(self) -> list[ParamRow]:
        out = []
        for r in range(self.table.rowCount()):
            out.append(ParamRow(self.table.item(r, 0).text(), self.table.cellWidget(r, 1).currentText(),
                                self.table.cellWidget(r, 2).value(), self.table.cellWidget(r, 3).value(),
                                self.table.cellWidget(r, 4).isChecked(),
                                self.table.item(r, 5).text() if self.table.item(r, 5) else ""))
        return out

    def spec(self) -> dict:
        return build_spec(self.config, self.rows(), name=self.name.text().strip(),
                          sampler=self.sampler.currentText(), n_trials=self.n_trials.value(),
                          metric=self.metric.text().strip(), direction=self.direction.currentText(),
                          pruner=self.pruner.currentText(), parallel=self.parallel.value())


class SweepDialog(QDialog):
    """Config › Sweep…: New sweep (over the config the pane shows) and Trials (any sweep of the workspace)."""

    def __init__(self, context, fields: list, config: dict, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sweep")
        self.resize(900, 700)
        self.presenter = SweepPresenter(context, self)
        self.tabs = QTabWidget()
        self.form = SweepForm(self.presenter, fields, config)
        self.view = SweepView(self.presenter)
        self.tabs.addTab(self.form, "New sweep")
        self.tabs.addTab(self.view, "Trials")
        QVBoxLayout(self).addWidget(self.tabs)
        self.form.start_btn.clicked.connect(self.start)
        self.view.reload_sweeps()

    def start(self) -> Path | None:
        spec = self.form.spec()
        if not spec["parameters"]:
            self.form.errors.setText("Add at least one parameter.")
            return None
        problem = self.presenter.check(spec)
        self.form.errors.setText(problem)
        if problem:
            return None
        sweep_dir = self.presenter.start(spec)
        self.view.reload_sweeps(select=sweep_dir)
        self.tabs.setCurrentWidget(self.view)
        return sweep_dir
