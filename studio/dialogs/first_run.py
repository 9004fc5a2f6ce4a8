"""First-run guide "Train the demo model": demo data → tokenizer → pretrain (tiny) → SFT (from the pretrain run)
→ Chat. Runs are launched through `context.launchRequested` like any run from the Config pane, so they show up
in Runs and Curves while they train. Sizes, hyper-parameters and which files each stage reads (SFT: the plain and
the tool-use conversations) are core.demo's (`FULL` plan, `stage_files`), not chosen here. The guide ends by
suggesting `CHAT_QUESTION`, which the demo model answers by calling the calculator (measured: docs/benchmarks.md).

Hook it up from the main window: `FirstRunDialog(context, parent=window).show()` from Help > "Train the demo
model…", and once on a first run (empty workspace).
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout

from core.preparation import describe_prepare, prepare_fraction
from studio.threads import Task
from studio.widgets.common import label, primary_button
from studio.widgets.theme import COLORS, pane_style

STEPS = ("Generate the demo data", "Train a tokenizer", "Pretrain the tiny model", "Fine-tune it for chat (SFT)",
         "Open the Chat pane")
DONE_OK, DONE_BAD = ("completed",), ("failed", "stopped", "killed", "interrupted")
CHAT_QUESTION, CHAT_ANSWER = "What is 37 * 48?", 1776  # the demo model calls calculate_math (tests/test_demo.py)


def bar_format(step: int, known_total: bool) -> str:
    """The progress bar's text: which stage its share belongs to. The stages differ in length by orders of
    magnitude (seconds for the data, minutes for pretraining), so one overall share would mislead as much as an
    unlabelled stage share ("95 %" with SFT not started); the bar shows the stage's own share, named."""
    if step < 0:
        return ""
    stage = f"Step {step + 1} of {len(STEPS)}: {STEPS[step]}"
    return f"{stage} · %p%" if known_total else stage


class FirstRunPresenter(QObject):
    stepChanged = Signal(int, str, str)      # step index, state (running|done|failed), detail
    progress = Signal(object, object, str)
    finished = Signal(bool, str)             # ok, message

    def __init__(self, context, parent: QObject | None = None, plan=None):
        super().__init__(parent)
        self.context = context
        self.plan = plan
        self.step = -1
        self.paths: dict[str, list[Path]] = {}   # files per stage (core.demo.stage_files)
        self.tokenizer_dir: Path | None = None
        self.waiting: tuple[str, float] | None = None   # (run name, launched at)
        self.run_dirs: dict[str, str] = {}
        self._task: Task | None = None
        self._poll = QTimer(self, interval=2000)
        self._poll.timeout.connect(self.check_runs)  # also on runsChanged/runUpdated (MainWindow._connect_pane)

    def _plan(self):
        if self.plan is None:
            from core.demo import FULL
            self.plan = FULL
        return self.plan

    def start(self) -> None:
        self._enter(0)
        ws = self.context.workspace
        sizes = dict(self._plan().data_sizes) or None

        def make_data(progress, cancelled):
            from core.data import generate_demo_data
            return generate_demo_data(ws.datasets_dir / "demo", sizes=sizes)

        self._run_task(make_data, self._data_done)

    def _enter(self, step: int, detail: str = "") -> None:
        self.step = step
        self.stepChanged.emit(step, "running", detail)

    def _fail(self, message: str) -> None:
        self._poll.stop()
        self.stepChanged.emit(self.step, "failed", message)
        self.finished.emit(False, f"{STEPS[self.step]} failed: {message}")

    def _run_task(self, fn, on_done) -> None:
        self._task = Task(fn, parent=self)
        self._task.progress.connect(self.progress)
        self._task.succeeded.connect(on_done)
        self._task.failed.connect(self._fail)
        self._task.start()

    def _data_done(self, paths: dict) -> None:
        from core.demo import stage_files

        folder = Path(paths["pretrain"]).parent
        self.paths = stage_files(folder)
        files = sorted(folder.glob("*.jsonl"))
        kinds = {Path(path): kind for kind, path in paths.items()}
        for f in files:  # the Datasets pane lists the workspace's datasets from the store
            self.context.store.add_dataset(str(f), name=f.name, kind=kinds.get(f, ""))
        self.stepChanged.emit(0, "done", f"{len(files)} files in {folder}")
        self.context.datasetsChanged.emit()
        self._enter(1)
        out = self.context.workspace.tokenizers_dir / "demo"
        files, plan = self.paths["tokenizer"], self._plan()

        def train(progress, cancelled):
            from core.demo import train_demo_tokenizer
            train_demo_tokenizer(files, plan, out,
                                 progress=lambda d, t=0: progress(d, t, "reading records"))
            return out

        self._run_task(train, self._tokenizer_done)

    def _tokenizer_done(self, out: Path) -> None:
        self.tokenizer_dir = Path(out)
        self.stepChanged.emit(1, "done", str(out))
        self.context.datasetsChanged.emit()  # the tokenizer lists (Datasets › Stats) show it now
        self._launch("pretrain", None)

    def config_for(self, method: str, init: str | None) -> dict:
        """The run config: core.demo's, with the run folder left to the run manager."""
        from core.demo import train_config

        cfg = train_config(method, self._plan(), self.paths[method], self.tokenizer_dir,
                           self.context.workspace.runs_dir / "_", Path(init) if init else None)
        cfg.pop("run_dir", None)
        cfg["data"].pop("cache_dir", None)  # each run caches under its own folder
        cfg["name"] = f"demo-{method}"
        return cfg

    def _launch(self, method: str, init: str | None, parent_run_id: str | None = None) -> None:
        self._enter(2 if method == "pretrain" else 3, "queued")
        self.waiting = (f"demo-{method}", time.time() - 1)
        config = self.config_for(method, init)
        if parent_run_id:
            config["parent_run_id"] = parent_run_id  # lineage: the SFT run descends from the pretrain run
        self.context.launchRequested.emit(config)
        self._poll.start()

    def check_runs(self) -> None:
        if self.waiting is None:
            return
        name, since = self.waiting
        runs = [r for r in self.context.store.list_runs() if r.name == name and (r.created_at or 0) >= since]
        if not runs:
            return
        run = max(runs, key=lambda r: r.created_at)
        prep = self.context.store.preparation(run.id) if run.status in ("starting", "running") else None
        if prep is not None:  # tokenizing before the first step: "preparing data 37 %, 12 min left"
            step_text = describe_prepare(prep)
            self.stepChanged.emit(self.step, "running", step_text)
            self.progress.emit(int(1000 * prepare_fraction(prep)), 1000, step_text)
            return
        step_text = f"{run.status} · step {run.last_step}" + (f"/{run.total_steps}" if run.total_steps else "")
        self.stepChanged.emit(self.step, "running", step_text)
        if run.total_steps:
            self.progress.emit(run.last_step, run.total_steps, step_text)
        if run.status in DONE_BAD:
            self.waiting = None
            self._fail(f"run {run.id} {run.status}: {run.status_message or 'see its log in the Runs pane'}")
        elif run.status in DONE_OK:
            self.waiting = None
            self.run_dirs[name] = run.run_dir
            self.stepChanged.emit(self.step, "done", f"run {run.id}")
            if name == "demo-pretrain":
                self._launch("sft", run.run_dir, run.id)
            else:
                self._poll.stop()
                self._enter(4)
                self.context.showPaneRequested.emit("Chat")
                self.stepChanged.emit(4, "done", "")
                self.finished.emit(True, f"The demo model is ready: turn the calculator tool on and ask it "
                                         f"“{CHAT_QUESTION}”")

    def shutdown(self) -> None:
        self._poll.stop()
        if self._task is not None:
            self._task.cancel_and_wait()


class FirstRunDialog(QDialog):
    """A small guided dialog over `FirstRunPresenter`; non-modal so the user can watch Runs/Curves meanwhile."""

    def __init__(self, context, parent=None):
        super().__init__(parent)
        pane_style(self)
        self.setWindowTitle("Train the demo model")
        self.setMinimumWidth(520)
        self.presenter = FirstRunPresenter(context, self)
        v = QVBoxLayout(self)
        v.setContentsMargins(18, 18, 18, 18)
        v.addWidget(label("Train the demo model", "title"))
        v.addWidget(label("About five minutes on a laptop CPU: built-in English and Chinese facts and tool "
                          "calls, a 1 M parameter model, then a chat where it uses the calculator. Nothing is "
                          "downloaded.", "muted"))
        self.rows: list[tuple[QLabel, QLabel]] = []
        for i, text in enumerate(STEPS):
            row = QHBoxLayout()
            mark, detail = QLabel("○"), label("", "muted")
            mark.setFixedWidth(20)
            row.addWidget(mark)
            row.addWidget(QLabel(f"{i + 1}. {text}"))
            row.addWidget(detail, 1)
            v.addLayout(row)
            self.rows.append((mark, detail))
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.step = -1  # the stage the bar's share belongs to (bar_format)
        v.addWidget(self.bar)
        self.message = label("")
        v.addWidget(self.message)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.close_btn = QPushButton("Close")
        self.start_btn = primary_button("Start")
        buttons.addWidget(self.close_btn)
        buttons.addWidget(self.start_btn)
        v.addLayout(buttons)
        self.start_btn.clicked.connect(self._start)
        self.close_btn.clicked.connect(self.close)
        p = self.presenter
        p.stepChanged.connect(self._on_step)
        p.progress.connect(self._on_progress)
        p.finished.connect(self._on_finished)

    def _start(self) -> None:
        self.step = -1
        self.start_btn.setEnabled(False)
        self.presenter.start()

    def _on_step(self, i: int, state: str, detail: str) -> None:
        if state == "running" and i != self.step:  # a new stage: its share starts from nothing
            self.step = i
            self.bar.setRange(0, 1)
            self.bar.setValue(0)
            self.bar.setFormat(bar_format(i, known_total=False))
        mark, text = self.rows[i]
        mark.setText({"running": "◐", "done": "✔", "failed": "✖"}[state])
        color = {"running": COLORS["accent"], "done": COLORS["ok"], "failed": COLORS["bad"]}[state]
        mark.setStyleSheet(f"color:{color}; font-weight:700")
        text.setText(detail)

    def _on_progress(self, done, total, _text: str) -> None:
        if total:
            self.bar.setRange(0, int(total))
            self.bar.setValue(int(done))
        else:
            self.bar.setRange(0, 0)
        self.bar.setFormat(bar_format(self.step, known_total=bool(total)))

    def _on_finished(self, ok: bool, message: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if ok else 0)
        self.bar.setFormat("All steps done" if ok else bar_format(self.step, known_total=False) + " · failed")
        color = COLORS["ok"] if ok else COLORS["bad"]
        self.message.setText(f"<span style='color:{color}'>{message}</span>")
        self.start_btn.setEnabled(not ok)
        self.start_btn.setText("Retry" if not ok else "Start")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt API)
        self.presenter.shutdown()
        super().closeEvent(event)
