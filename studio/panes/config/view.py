"""Config pane: forms generated from the pydantic schema, presets, estimates, pre-flight, Start."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QScrollArea, QSpinBox, QSplitter, QTabWidget, QTextBrowser, QVBoxLayout,
                               QWidget)

from studio.panes.config.presenter import PRESET_NAMES, ConfigPresenter, method_help, method_names
from studio.widgets.common import banner, label, primary_button, quit_hook, set_banner
from studio.widgets.schema_form import SchemaForm
from studio.widgets.theme import COLORS, pane_style

SECTIONS = (("run", "Run"), ("model", "Model"), ("data", "Data"), ("optim", "Optimizer"), ("method", "Method"),
            ("log", "Trackers"))


def _gb(n: float | None) -> str:
    return "—" if n is None else (f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB")


class ConfigPane(QWidget):
    def __init__(self, context, parent: QWidget | None = None):
        super().__init__(parent)
        pane_style(self)
        self.context = context
        self.presenter = ConfigPresenter(context, self)
        quit_hook(self.presenter.shutdown)
        self.forms: dict[str, SchemaForm] = {}
        self._shown: tuple[str | None, str | None] = (None, None)  # (method, init) whose defaults the form shows
        root = QVBoxLayout(self)
        root.setContentsMargins(12, 12, 12, 12)
        root.addWidget(label("Training config", "title"))
        self.notice = banner()
        root.addWidget(self.notice)
        self._recheck = QTimer(self, singleShot=True, interval=250)
        self._recheck.timeout.connect(self.refresh)
        root.addLayout(self._toolbar())
        self.lineage = label("", "muted")
        root.addWidget(self.lineage)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self._form_tabs())
        split.addWidget(self._side_panel())
        split.setSizes([640, 420])
        root.addWidget(split, 1)
        self.presenter.preflightFinished.connect(self._on_preflight)
        self.presenter.estimateChanged.connect(self._show_estimate)
        self.presenter.preflightFailed.connect(lambda m: self.preflight_view.setHtml(
            f"<p style='color:{COLORS['bad']}'>Pre-flight failed: {m}</p>"))
        self.set_config(self.presenter.default_config())

    # ---- layout ----------------------------------------------------------------------------------
    def _toolbar(self) -> QVBoxLayout:
        """Two rows: what to train (preset, method, start point, GPUs), then the actions. One row needed
        1220 px, more than the pane has at 1280x800 beside the docked demo guide."""
        bar = QHBoxLayout()
        self.preset_box = QComboBox()
        self.preset_box.addItems(PRESET_NAMES)
        preset_btn = QPushButton("Load preset")
        preset_btn.clicked.connect(lambda: self.load_preset(self.preset_box.currentText()))
        self.method_box = QComboBox()
        self.method_box.addItems(method_names())
        self.method_box.currentTextChanged.connect(self._method_changed)
        self.init_box = QComboBox()
        self.init_box.setMinimumWidth(220)
        self.init_box.currentIndexChanged.connect(lambda _i: self._recheck.start())
        self.init_box.currentIndexChanged.connect(lambda _i: self._init_changed())
        self.gpus = QSpinBox()
        self.gpus.setRange(1, 64)
        self.gpus.setToolTip("More than 1 launches torchrun with one process per GPU")
        self.gpus.valueChanged.connect(lambda _v: self._recheck.start())
        for text, w in (("Preset", self.preset_box), ("", preset_btn), ("Method", self.method_box),
                        ("Start from", self.init_box), ("GPUs", self.gpus)):
            if text:
                bar.addWidget(QLabel(text))
            bar.addWidget(w)
        bar.addStretch(1)
        actions = QHBoxLayout()
        actions.addStretch(1)
        load_btn, save_btn = QPushButton("Open…"), QPushButton("Save…")
        load_btn.clicked.connect(self._load_file)
        save_btn.clicked.connect(self._save_file)
        self.preflight_btn = QPushButton("Pre-flight check")
        self.preflight_btn.clicked.connect(self.run_preflight)
        self.sweep_btn = QPushButton("Sweep…")
        self.sweep_btn.setToolTip("Vary some fields of this config over many runs (grid, random or Optuna TPE)")
        self.sweep_btn.clicked.connect(self.open_sweep)
        self.start_btn = primary_button("Start")
        self.start_btn.clicked.connect(self.start)
        for w in (load_btn, save_btn, self.preflight_btn, self.sweep_btn, self.start_btn):
            actions.addWidget(w)
        rows = QVBoxLayout()
        rows.addLayout(bar)
        rows.addLayout(actions)
        return rows

    def _form_tabs(self) -> QTabWidget:
        self.tabs = QTabWidget()
        p = self.presenter
        groups: dict[str, list] = {key: [] for key, _ in SECTIONS}
        for spec in p.model_fields() + p.train_fields():
            groups[p.section_of(spec)].append(spec)
        self.section_specs = groups
        for key, title in SECTIONS:
            page = QWidget()
            page.setObjectName("FormPage")
            self.section_layouts = getattr(self, "section_layouts", {})
            v = QVBoxLayout(page)
            v.setContentsMargins(6, 6, 6, 6)
            self.section_layouts[key] = v
            if key == "method":
                self.method_help = label("", "muted")
                v.addWidget(self.method_help)
            if key == "model":
                self.model_note = label("The architecture comes from the starting checkpoint.", "muted")
                self.model_note.setVisible(False)
                v.addWidget(self.model_note)
                self.model_error = label("", "error")
                self.model_error.setVisible(False)
                v.addWidget(self.model_error)
            form = SchemaForm(groups[key], strip_prefix=1 if key in ("model", "data", "optim", "log") else 0)
            form.changed.connect(self._recheck.start)
            self.forms[key] = form
            v.addWidget(form)
            v.addStretch(1)
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(page)
            self.tabs.addTab(scroll, title)
        return self.tabs

    def _side_panel(self) -> QWidget:
        side = QWidget()
        v = QVBoxLayout(side)
        v.setContentsMargins(8, 0, 0, 0)
        box = QGroupBox("Estimate")
        form = QFormLayout(box)
        self.est_labels = {k: QLabel("—") for k in ("params", "memory", "breakdown", "tokens")}
        self.est_labels["breakdown"].setProperty("role", "muted")
        self.est_labels["breakdown"].setWordWrap(True)
        form.addRow("Parameters", self.est_labels["params"])
        form.addRow("Memory / GPU", self.est_labels["memory"])
        form.addRow("", self.est_labels["breakdown"])
        form.addRow("Tokens / step", self.est_labels["tokens"])
        self.price = QLineEdit()
        self.price.setPlaceholderText("optional, e.g. 2.50")
        self.price.setToolTip("Price of this machine per hour: pre-flight turns its time estimate into a cost")
        self.price.textChanged.connect(self._price_changed)
        form.addRow("Price / hour", self.price)
        v.addWidget(box)
        pre = QGroupBox("Pre-flight")
        pv = QVBoxLayout(pre)
        self.preflight_view = QTextBrowser()
        self.preflight_view.setHtml(f"<p style='color:{COLORS['muted']}'>Run the pre-flight check before Start: "
                                    "it lints the data, shows one record with the tokens that carry loss, "
                                    "measures truncation and compares memory with the device.</p>")
        pv.addWidget(self.preflight_view)
        v.addWidget(pre, 1)
        return side

    # ---- config <-> widgets ----------------------------------------------------------------------
    def _switch_defaults(self) -> None:
        """After the method or the starting checkpoint changed: untouched fields take the new defaults."""
        cfg = self.config()
        changes = self.presenter.switched_defaults(cfg, self._shown[0], self._shown[1])
        self._shown = (cfg["method"], cfg.get("init"))
        for form in self.forms.values():
            form.set_some(changes)

    def _method_changed(self, method: str) -> None:
        if self._shown[0] is not None:
            self._switch_defaults()
        old = self.forms.get("method_options")
        if old is not None:
            old.setParent(None)
            old.deleteLater()
        specs = self.presenter.method_fields(method)
        form = SchemaForm(specs, strip_prefix=1)
        form.set_values(self.presenter.method_defaults(method))
        form.changed.connect(self._recheck.start)
        self.forms["method_options"] = form
        self.section_layouts["method"].insertWidget(1, form)
        self.method_help.setText(method_help(method))
        self._recheck.start()

    def refresh_checkpoints(self) -> None:
        current = self.init_box.currentData()
        self.init_box.blockSignals(True)
        self.init_box.clear()
        self.init_box.addItem("(random init)", None)
        for src in self.presenter.checkpoints():
            self.init_box.addItem(src.label, src.path)
        i = self.init_box.findData(current)
        self.init_box.setCurrentIndex(max(0, i))
        self.init_box.blockSignals(False)
        self._init_changed()

    def _init_changed(self) -> None:
        """A starting checkpoint fixes the architecture: show its model config, read-only."""
        path = self.init_box.currentData()
        if self._shown[0] is not None and path != self._shown[1]:
            self._switch_defaults()  # a parent run sets the default rate (core.methods.resolve_defaults)
        self.lineage.setText("Lineage: " + self.presenter.lineage_text(path))
        model = self.presenter.checkpoint_model(path)
        if model is not None:
            cfg = self.config()
            cfg["model"] = model
            self.forms["model"].set_values(cfg)
        self.forms["model"].setEnabled(model is None)
        self.preset_box.setEnabled(model is None)
        self.model_note.setVisible(model is not None)

    def set_config(self, config: dict) -> None:
        """Show `config` (a TrainConfig-shaped dict, plus the studio's n_gpus/name)."""
        config = dict(config)
        self._shown = (None, None)
        model = config.get("model")
        if isinstance(model, str):  # a preset name
            config["model"] = self.presenter.preset(model)
        self.method_box.setCurrentText(config.get("method", "pretrain"))
        self._method_changed(self.method_box.currentText())
        # a saved config holds only the options its author set: the form shows the method's defaults for the rest
        defaults = self.presenter.method_defaults(self.method_box.currentText()).get("method_options", {})
        config["method_options"] = {**defaults, **(config.get("method_options") or {})}
        self.gpus.setValue(int(config.get("n_gpus") or 1))
        for form in self.forms.values():
            form.set_values(config)
        self._shown = (None, None)  # the values shown are the config's own, not a method's defaults
        self.refresh_checkpoints()
        if config.get("init"):
            i = self.init_box.findData(config["init"])
            if i < 0:
                self.init_box.addItem(str(config["init"]), config["init"])
                i = self.init_box.count() - 1
            self.init_box.blockSignals(True)
            self.init_box.setCurrentIndex(i)
            self.init_box.blockSignals(False)
        self._init_changed()  # a starting checkpoint overrides the model fields with its own
        self._shown = (self.method_box.currentText(), self.init_box.currentData())
        self.refresh()

    def config(self) -> dict:
        out: dict = {}
        for form in self.forms.values():
            for k, v in form.values().items():
                if isinstance(v, dict):
                    out.setdefault(k, {}).update(v)
                else:
                    out[k] = v
        out["method"] = self.method_box.currentText()
        out["init"] = self.init_box.currentData()
        out["n_gpus"] = self.gpus.value()
        out.setdefault("method_options", {})
        return out

    def parse_errors(self) -> dict[str, str]:
        errs: dict[str, str] = {}
        for form in self.forms.values():
            errs.update(form.parse_errors)
        return errs

    def refresh(self) -> dict[str, str]:
        """Validate and re-estimate; show every message under its field."""
        cfg = self.config()
        errors = {**self.presenter.validate(cfg), **self.parse_errors()}
        warnings = self.presenter.default_warnings(cfg)
        for form in self.forms.values():
            form.set_errors(errors, warnings)
        known = {k for form in self.forms.values() for k in form.editors}
        model_level = [m for k, m in errors.items() if k == "model"]  # ModelConfig's cross-field rules
        loose = [m for k, m in errors.items() if k not in known and k != "model"]  # e.g. lora without init
        self.model_error.setText("\n".join(model_level))
        self.model_error.setVisible(bool(model_level))
        keyed = sorted(k for k in errors if k in known or k == "model")
        lines = loose + ([f"{len(keyed)} field(s) need attention: {', '.join(keyed)}"] if keyed else [])
        set_banner(self.notice, "\n".join(lines))
        self.start_btn.setEnabled(not errors)
        self.presenter.request_estimate(cfg)
        return errors

    def _show_estimate(self, e: dict) -> None:
        if "error" in e:
            for lab in self.est_labels.values():
                lab.setText("—")
            self.est_labels["breakdown"].setWordWrap(True)
            self.est_labels["breakdown"].setText(e["error"])
            return
        active = f" ({e['active_params'] / 1e6:.2f} M active)" if e["active_params"] != e["params"] else ""
        self.est_labels["params"].setText(f"<b>{e['params']:,}</b> = {e['params'] / 1e6:.2f} M{active}")
        self.est_labels["memory"].setText(f"<b>{_gb(e['total'])}</b> (estimate)")
        # One part per line, no word wrap: a wrapped label in a form row got the height of fewer lines than it
        # wrapped into and was cut off mid-text.
        parts = [f"weights {_gb(e['weights'])}", f"grads + Adam {_gb(e['grads_adam'])}",
                 f"activations {_gb(e['activations'])}"] + ([f"reference {_gb(e['reference'])}"]
                                                          if e["reference"] else [])
        parts.append(f"micro-batch {e['per_gpu_batch']} × {e['seq']} tokens per GPU")
        self.est_labels["breakdown"].setWordWrap(False)
        self.est_labels["breakdown"].setText("\n".join(parts))
        self.est_labels["tokens"].setText(f"{e['tokens_per_step']:,}")

    def load_preset(self, name: str) -> None:
        cfg = self.config()
        cfg["model"] = self.presenter.preset(name)
        self.forms["model"].set_values(cfg)
        self.refresh()

    # ---- actions ---------------------------------------------------------------------------------
    def _load_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a config", "", "JSON (*.json)")
        if path:
            try:
                self.set_config(self.presenter.load(path))
            except ValueError as exc:
                set_banner(self.notice, str(exc))

    def _save_file(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the config", "config.json", "JSON (*.json)")
        if path:
            self.presenter.save(self.config(), path)

    def run_preflight(self) -> None:
        self.preflight_view.setHtml("<p>Checking…</p>")
        self.presenter.preflight(self.config())

    def _on_preflight(self, r: dict) -> None:
        ok = r.get("ok")
        head = (f"<h3 style='color:{COLORS['ok'] if ok else COLORS['bad']}'>"
                f"{'Ready to start' if ok else 'Problems found'}</h3>")
        parts = [head]
        for lint in r.get("lint", []):
            parts.append(f"<p><b>{lint['file']}</b> ({r['kind']}): {lint['summary']}</p>")
        if r["problems"]:
            parts.append("<ul>" + "".join(f"<li style='color:{COLORS['bad']}'>{p}</li>"
                                          for p in r["problems"][:30]) + "</ul>")
        for note in r.get("notes", []):
            parts.append(f"<p style='color:{COLORS['warn']}'>{note}</p>")
        origins = (r.get("defaults") or {}).get("sources") or {}
        if origins:
            rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td>"
                           f"<td style='color:{COLORS['muted']}'>{html.escape(src)}</td></tr>"
                           for k, (v, src) in origins.items())
            parts.append(f"<p>Settings and where they come from:</p><table cellpadding='2'>{rows}</table>")
        if r.get("truncation") is not None:
            parts.append(f"<p>Truncated at max_len: <b>{r['truncation']:.1%}</b> of sampled records</p>")
        if r.get("precision"):
            parts.append(f"<p>Precision: {html.escape(r['precision'])}</p>")
        mem = r.get("memory", {})
        if mem.get("free"):
            parts.append(f"<p>Memory: about {_gb(mem['estimate'])} needed, {_gb(mem['free'])} free</p>")
        parts.append(_time_html(r.get("time")))
        if r.get("record_html"):
            parts.append(f"<p>First record: {r['record_tokens']} tokens, <span style='background:"
                         f"{COLORS['loss']}'>{r['loss_tokens']} carry loss</span></p>{r['record_html']}")
        self.preflight_view.setHtml("".join(parts))

    def _price_changed(self, text: str) -> None:
        try:
            self.presenter.price_per_hour = float(text) if text.strip() else None
        except ValueError:
            self.presenter.price_per_hour = None

    def current_config(self) -> dict | None:
        """The config to launch (Run > Start run in the main window), or None while a field is invalid."""
        if self.refresh():
            return None
        return self.presenter.launch_config(self.config())

    def start(self) -> None:
        if self.refresh():
            return
        if self.presenter.launch(self.config()):
            self.context.statusMessage.emit(f"Starting a {self.method_box.currentText()} run…")

    def open_sweep(self):
        """The sweep dialog over the config shown (studio/panes/config/sweep_view.py); None while a field is invalid."""
        from studio.panes.config.sweep_view import SweepDialog

        config = self.current_config()
        if config is None:
            return None
        fields = self.presenter.model_fields() + self.presenter.train_fields() + \
            self.presenter.method_fields(self.method_box.currentText())
        dialog = SweepDialog(self.context, fields, config, self)
        dialog.show()
        return dialog

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.presenter.shutdown()
        super().closeEvent(event)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _time_html(t: dict | None) -> str:
    """Pre-flight's wall-time line: the estimate, steps and seconds a step, and the cost when a price is set."""
    from studio.panes.runs.presenter import format_duration

    if not t:
        return ""
    if t.get("error"):
        return f"<p style='color:{COLORS['muted']}'>Time: {html.escape(t['error'])}</p>"
    cost = f", about <b>{t['cost']:.2f}</b> at {t['price_per_hour']:g}/hour" if t.get("cost") is not None else ""
    source = "cached calibration" if t.get("cached") else "calibrated now"
    return (f"<p>Time: about <b>{format_duration(t['seconds'])}</b>{cost} ({t['steps']:,} steps × "
            f"{t['step_seconds']:.3g} s, {source} on this machine)</p>")
