"""Logic of the Evaluate pane: pick models and tasks, run them in a worker process, store and compare the results.

Runs go to `python -m core.eval.worker SPEC.json` in a QProcess (its JSON lines give progress and
results; an evaluation is short and its results are stored as each pair finishes, so unlike training it need not
outlive the studio). Cancel sends SIGTERM: the worker stops at its next batch. Results live in the store's
``eval_result`` table (studio.store.eval_results), one row per model and task; this presenter turns them into the
comparison table, the chart series, per-item details and CSV / Markdown exports.
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from core.eval.worker import RL_SIGNAL, TOOL_USE
from core.event_schema import parse_event_line, validate_eval_message
from studio.worker.command import eval_worker_command
from studio.store.eval_results import eval_details, eval_results, save_eval_result
from studio.store.model_sources import ModelSource, list_checkpoints, list_ggufs

REPO = Path(__file__).resolve().parents[2]
BUILTIN_TASKS = ("demo-facts", "shared-poems")  # core.eval.tasks.BUILTIN, without importing core.eval on the UI
DEFAULT_SETTINGS = {"k_shot": 0, "limit": 50, "batch_size": 16, "max_new_tokens": 128, "max_turns": 3, "ngram": 13,
                    "samples": 8, "temperature": 1.0}


def task_label(task: str) -> str:
    tool_cases = task.startswith((TOOL_USE, RL_SIGNAL))
    return Path(task).name if ("/" in task or "\\" in task) and not tool_cases else task


def format_cell(row: dict | None) -> str:
    """'42.0% [30–55%]', with the contaminated share and a warning sign when flagged."""
    if row is None:
        return "–"
    text = f"{row['accuracy']:.1%}"
    if row.get("ci_low") is not None:
        text += f" [{row['ci_low'] * 100:.0f}–{row['ci_high']:.0%}]"
    if row.get("contamination") is not None:
        text += f" · {row['contamination']:.0%} seen" + (" ⚠" if row.get("flagged") else "")
    return text


class EvaluatePresenter(QObject):
    sourcesChanged = Signal(list)           # [ModelSource]
    tasksChanged = Signal(list)             # [task names]
    resultsChanged = Signal()
    progress = Signal(int, int, str)        # done, total (per mille of all pairs), what is being scored
    runningChanged = Signal(bool)
    finished = Signal(str)                  # "completed" | "cancelled" | "failed"
    errorRaised = Signal(str)

    def __init__(self, context, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.sources: list[ModelSource] = []
        self.tasks: list[str] = [*BUILTIN_TASKS, TOOL_USE, RL_SIGNAL]
        self.errors: list[str] = []
        self._process: QProcess | None = None
        self._buffer = b""
        self._stderr = b""
        self._jobs = 1
        self._status = "failed"

    # ---- setup -------------------------------------------------------------------------------------------
    def refresh_sources(self) -> list[ModelSource]:
        """Checkpoints and GGUFs (also when runs, checkpoints or exports change: MainWindow._connect_pane)."""
        self.sources = list_checkpoints(self.context) + list_ggufs(self.context)
        self.sourcesChanged.emit(self.sources)
        return self.sources

    def add_task(self, task: str) -> None:
        """A benchmark file (C-Eval/MMLU CSV, ARC/OBQA/HellaSwag/PIQA JSONL) or `tool-use:CASES.jsonl`."""
        if task and task not in self.tasks:
            self.tasks.append(task)
            self.tasksChanged.emit(list(self.tasks))

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self, models: list[str], tasks: list[str], settings: dict | None = None) -> bool:
        if self.running or not models or not tasks:
            return False
        spec = {"models": list(models), "tasks": list(tasks), "settings": {**DEFAULT_SETTINGS, **(settings or {})}}
        folder = self.context.workspace.root / "evals"
        folder.mkdir(parents=True, exist_ok=True)
        spec_path = folder / f"spec-{time.strftime('%Y%m%d-%H%M%S')}-{id(self) % 10000}.json"
        spec_path.write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
        self._jobs, self._status, self._buffer, self._stderr, self.errors = len(models) * len(tasks), "failed", b"", \
            b"", []
        proc = self._process = QProcess(self)
        proc.setWorkingDirectory(str(REPO))
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(lambda: setattr(self, "_stderr", (self._stderr +
                                                                               proc.readAllStandardError().data())[-4000:]))
        proc.finished.connect(self._on_finished)
        argv = eval_worker_command(spec_path)
        proc.start(argv[0], argv[1:])
        self.runningChanged.emit(True)
        self.progress.emit(0, 1000, f"starting {self._jobs} evaluation(s)…")
        return True

    def cancel(self) -> None:
        """Ask the worker to stop (SIGTERM: it ends at its next batch); killed if it has not ended in 15 s."""
        proc = self._process
        if proc is not None:
            self._status = "cancelled"
            proc.terminate()
            QTimer.singleShot(15000, lambda: self._process is proc and proc.kill())

    # ---- the worker's lines ------------------------------------------------------------------------------
    def _read_stdout(self) -> None:
        self._buffer += self._process.readAllStandardOutput().data()
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.handle_line(line)

    def handle_line(self, line: bytes) -> None:
        """One line of the worker's stdout: a message checked against core/event_schema.py's EVAL_MESSAGES."""
        message = parse_event_line(line)
        if message is None:
            return  # not a message (a library's stray print)
        problem = validate_eval_message(message)
        if problem:  # a malformed message is skipped, and said
            self.errors.append(f"the evaluation worker sent a malformed message: {problem}")
            self.errorRaised.emit(self.errors[-1])
            return
        self.handle(message)

    def handle(self, message: dict) -> None:
        kind, job = message.get("type"), int(message.get("job", 0))
        name = f"{self.label_for(message.get('model', ''))} · {task_label(message.get('task', ''))}"
        if kind == "progress":
            share = (job + message["done"] / max(1, message["total"])) / self._jobs
            self.progress.emit(int(share * 1000), 1000, f"{name}: {message['done']}/{message['total']}")
        elif kind == "result":
            source = self.source_for(message["model"])
            save_eval_result(self.context.store, message["model"], message["task"], message["result"],
                             self.label_for(message["model"]), source.run_id if source else None)
            self.resultsChanged.emit()
        elif kind == "error":
            self.errors.append(f"{name}: {message.get('message', '')}")
            self.errorRaised.emit(self.errors[-1])
        elif kind == "finished" and self._status != "cancelled":
            self._status = message.get("status", "completed")

    def _on_finished(self, code: int, _status) -> None:
        self._read_stdout()
        if self._status == "failed":
            tail = self._stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            self.errorRaised.emit(f"the evaluation worker exited with code {code}: " + " / ".join(tail))
        self._process.deleteLater()
        self._process = None
        self.runningChanged.emit(False)
        self.progress.emit(1000 if self._status == "completed" else 0, 1000, self._status)
        self.finished.emit(self._status)

    # ---- views -------------------------------------------------------------------------------------------
    def source_for(self, path: str) -> ModelSource | None:
        return next((s for s in self.sources if s.path == path), None)

    def label_for(self, path: str) -> str:
        source = self.source_for(path)
        return source.label if source else Path(path).name

    def results(self) -> list[dict]:
        return eval_results(self.context.store)

    def comparison(self) -> tuple[list[tuple[str, str]], list[str], dict[tuple[str, str], dict]]:
        """(models as (path, label), tasks, {(path, task): result row}) for the table and the chart."""
        rows = self.results()
        models = list(dict.fromkeys((r["model_path"], r["model_label"]) for r in rows))
        tasks = list(dict.fromkeys(r["task"] for r in rows))
        return models, tasks, {(r["model_path"], r["task"]): r for r in rows}

    def details(self, model_path: str, task: str) -> list[dict]:
        return eval_details(self.context.store, model_path, task)

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["model", "path", "task", "accuracy", "ci_low", "ci_high", "contamination", "flagged", "n",
                         "seconds", "settings"])
        for r in self.results():
            writer.writerow([r["model_label"], r["model_path"], r["task"], f"{r['accuracy']:.4f}",
                             *("" if v is None else f"{v:.4f}" for v in (r["ci_low"], r["ci_high"], r["contamination"])),
                             "yes" if r["flagged"] else "no", r["n"], f"{r['seconds']:.2f}",
                             json.dumps(r["settings"], ensure_ascii=False, sort_keys=True)])
        return out.getvalue()

    def markdown_text(self) -> str:
        """The comparison table: a row per model, a column per task, accuracy with its 95 % interval."""
        models, tasks, cells = self.comparison()
        lines = ["| model | " + " | ".join(task_label(t) for t in tasks) + " |",
                 "|---|" + "---|" * len(tasks)]
        for path, label in models:
            lines.append(f"| {label} | " + " | ".join(format_cell(cells.get((path, t))) for t in tasks) + " |")
        if any(r.get("flagged") for r in cells.values()):
            lines += ["", "⚠ a large share of the benchmark's items occur in the model's training data."]
        return "\n".join(lines) + "\n"

    def export(self, path: str | Path) -> Path:
        """CSV for a .csv path, Markdown otherwise."""
        path = Path(path)
        path.write_text(self.csv_text() if path.suffix.lower() == ".csv" else self.markdown_text(), encoding="utf-8")
        return path
