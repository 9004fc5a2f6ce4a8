"""Runs pane logic: the history rows, what each button may do for a run, and the detail text.

Plain object over the StudioContext (store + run manager); the widget only renders ``rows()`` and ``detail()``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from core.preparation import describe_prepare, prepare_fraction
from core.train.trackers import TENSORBOARD_DIR
from studio.store import ACTIVE_STATUSES

COLUMNS = ("Name", "Method", "Status", "Duration", "Best loss", "Steps", "Started")
LIVE = ("starting", "running", "stopping")


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class RunProgress:
    """What the status bar shows of a live run: preparing its data, or training."""
    preparing: bool
    label: str                # "Preparing data for run-1" / "Training run-1"
    value: int
    maximum: int
    text: str                 # inside the bar: "37 %" / "120/1000 steps"
    eta_s: float | None       # seconds left (of the preparation while preparing)


def run_progress(store, manager, run_id: str) -> RunProgress:
    """The status bar's view of one live run (one place for the window and its tests)."""
    prep = store.preparation(run_id)
    if prep is not None:
        fraction = prepare_fraction(prep)
        return RunProgress(True, f"Preparing data for {run_id}", int(1000 * fraction), 1000,
                           f"{int(100 * fraction)} %", prep.get("eta_s"))
    step, total, eta = manager.progress(run_id)
    return RunProgress(False, f"Training {run_id}", min(step, total or step), max(total or 0, 1),
                       f"{step}/{total or '?'} steps", eta)


@dataclass
class RunRow:
    run_id: str
    cells: tuple[str, ...]
    status: str
    tooltip: str


class RunsPresenter:
    def __init__(self, context) -> None:
        self.context = context

    @property
    def store(self):
        return self.context.store

    @property
    def manager(self):
        return self.context.runs

    # ------------------------------------------------------------------ rows
    def rows(self) -> list[RunRow]:
        return [self.row(run) for run in self.store.list_runs()]

    def row(self, run) -> RunRow:
        end = run.finished_at or (time.time() if run.status in LIVE else run.last_event_time)
        duration = format_duration(end - run.started_at) if run.started_at and end else ""
        steps = f"{run.last_step}/{run.total_steps}" if run.total_steps else str(run.last_step or "")
        best = f"{run.best_loss:.4f}" if run.best_loss is not None else ""
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started_at)) if run.started_at else ""
        status, tooltip = run.status, run.status_message or ""
        prep = self.store.preparation(run.id) if run.status in ("starting", "running") else None
        if prep is not None:  # "preparing data 37 %, 12 min left"
            status, tooltip = describe_prepare(prep), describe_prepare(prep, detail=True)
        return RunRow(run.id, (run.name, run.method, status, duration, best, steps, started), run.status, tooltip)

    # --------------------------------------------------------------- actions
    def allowed(self, run_id: str | None) -> dict[str, bool]:
        """Which buttons make sense for the selected run (start is always possible: it opens the Config pane)."""
        run = self.store.get_run(run_id) if run_id else None
        status = run.status if run else None
        has_ckpt = bool(run and self.store.checkpoints(run.id))
        # stopped or lost before its first checkpoint (e.g. while preparing data): resuming starts it again
        # from step 0, and the finished part of its token cache is kept
        restartable = bool(run and status in ("stopped", "interrupted") and (Path(run.run_dir) / "config.json").is_file())
        return {
            "start": True,
            "stop": status in ("queued", "starting", "running"),
            "kill": status in LIVE,
            "resume": (status in ("stopped", "interrupted", "failed", "completed") and has_ckpt) or restartable,
            "clone": run is not None,
            "delete": run is not None and status not in ACTIVE_STATUSES,
            "tensorboard": run is not None and self.tensorboard_dir(run.id) is not None,
        }

    def tensorboard_dir(self, run_id: str) -> Path | None:
        """The run's TensorBoard folder (`log.tensorboard` on), or None when it logged none."""
        run = self.store.get_run(run_id)
        folder = Path(run.run_dir) / TENSORBOARD_DIR if run else None
        return folder if folder is not None and folder.is_dir() else None

    def start(self) -> None:
        self.context.showPaneRequested.emit("Config")

    def stop(self, run_id: str) -> None:
        self.manager.stop(run_id)

    def kill(self, run_id: str) -> None:
        self.manager.kill(run_id)

    def resume(self, run_id: str) -> None:
        self.manager.resume(run_id)

    def clone(self, run_id: str) -> dict:
        return self.context.library.clone(run_id)  # the library sends it to the Config pane

    def delete(self, run_id: str, remove_files: bool = False) -> bool:
        return self.context.library.delete(run_id, remove_files=remove_files)

    # ---------------------------------------------------------------- detail
    def detail(self, run_id: str) -> dict:
        """Everything the detail panel shows: summary, lineage, checkpoints, recent warnings/errors, config."""
        run = self.store.get_run(run_id)
        if run is None:
            return {}
        lineage = []
        ancestors = self.store.lineage(run_id)[:-1]
        if ancestors:
            parent = ancestors[-1]
            lineage.append(f"parent run: {parent.name} ({parent.id}, {parent.status})")
        if len(ancestors) > 1:
            lineage.append("lineage: " + " → ".join(a.name for a in ancestors + [run]))
        if run.init_checkpoint:
            lineage.append(f"initialised from: {run.init_checkpoint}")
        for child in self.store.children(run_id):
            lineage.append(f"continued by: {child.name} ({child.id})")
        events = []
        for ev in self.store.events(run_id, ["warning", "error", "run_finished", "run_started"], limit=20):
            when = time.strftime("%H:%M:%S", time.localtime(ev.get("time", 0)))
            text = ev.get("message") or ev.get("status") or ""
            if ev["type"] == "run_started":
                text = f"on {ev.get('device', '?')}, {ev.get('params', '?')} params" + (
                    f", resumed from step {ev['resumed_from']}" if ev.get("resumed_from") is not None else "")
            events.append(f"{when} step {ev.get('step', 0)} {ev['type']}: {text}".rstrip(": "))
        return {
            "title": f"{run.name} — {run.status}",
            "summary": {"id": run.id, "method": run.method, "status": run.status, "device": run.device,
                        "folder": run.run_dir, "message": run.status_message,
                        "time": self.time_against_estimate(run)},
            "lineage": lineage or ["trained from scratch"],
            "checkpoints": [(c.step, c.path) for c in self.store.checkpoints(run_id)],
            "events": events,
            "config": json.dumps(json.loads(run.config_json or "{}"), indent=2),
            "stderr_tail": _tail(Path(run.run_dir) / "stderr.log"),
        }


    def time_against_estimate(self, run) -> str:
        """"took 4:10, estimated 3:55 (-6%)" once a run with a pre-flight time estimate has completed."""
        estimate = self.store.time_estimate(json.loads(run.config_json or "{}"))
        if not estimate:
            return ""
        text = f"estimated {format_duration(estimate['seconds'])}"
        if estimate.get("cost") is not None:
            text += f" (cost {estimate['cost']:.2f})"
        if run.status == "completed" and run.started_at and run.finished_at:
            took = run.finished_at - run.started_at
            text = f"took {format_duration(took)}, {text}, error {estimate['seconds'] / took - 1:+.0%}"
        return text


def _tail(path: Path, lines: int = 12) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4096))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
