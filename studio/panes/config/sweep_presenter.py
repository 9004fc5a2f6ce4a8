"""Logic of the sweep dialog (Config › Sweep…): a sweep spec over the current config, starting `minimind sweep`
as a detached process (it outlives the studio like a run does), reading its Optuna study back (core.sweep.study,
off the UI thread: importances take a second or two) and importing its trials' run folders as they appear, so
they are ordinary runs in the Runs pane and the lineage.

Sweeps started here live in the workspace's sweeps/ folder; their trials' run folders go to runs/.
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from studio.threads import Task

STUDIO_KEYS = ("name", "n_gpus", "parent_run_id", "target", "run_dir", "sweep")  # not part of a trial's base


@dataclass
class ParamRow:
    """One row of the form: a config field and its range or choices."""

    field: str
    type: str = "float"          # float | int | categorical
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: str = ""            # categorical: comma-separated, each read as JSON when it parses

    def spec(self) -> dict:
        if self.type == "categorical":
            return {"type": "categorical", "choices": [_value(c) for c in self.choices.split(",") if c.strip()]}
        if self.type == "int":
            return {"type": "int", "low": int(self.low), "high": int(self.high), "log": self.log}
        return {"type": "float", "low": float(self.low), "high": float(self.high), "log": self.log}


def _value(text: str):
    try:
        return json.loads(text.strip())
    except ValueError:
        return text.strip()


def suggest_row(field: str, kind: str, value, choices: list | None = None) -> ParamRow:
    """A first range for a field around its current value: a decade each way for a positive float (log scale),
    half to double for an int, every choice for an enum or a switch."""
    if kind in ("enum", "bool"):
        options = choices if kind == "enum" else [True, False]
        return ParamRow(field, "categorical", choices=", ".join(json.dumps(c) for c in options or [value]))
    if kind == "int":
        v = int(value or 0)
        return ParamRow(field, "int", low=max(0, v // 2), high=max(1, v * 2))
    v = float(value or 0.0)
    if v > 0:
        return ParamRow(field, "float", low=v / 10, high=v * 10, log=True)
    return ParamRow(field, "float", low=0.0, high=1.0)


def build_spec(config: dict, rows: list[ParamRow], *, name: str = "", sampler: str = "tpe", n_trials: int = 8,
               metric: str = "eval/loss", direction: str = "minimize", pruner: str = "median",
               parallel: int = 1) -> dict:
    """The sweep spec (core/sweep/spec.py) for the Config pane's config and the form's rows."""
    base = {k: v for k, v in config.items() if k not in STUDIO_KEYS}
    return {"name": name or f"{base.get('method', 'run')}-sweep", "base": base,
            "parameters": {row.field: row.spec() for row in rows}, "sampler": sampler,
            "n_trials": None if sampler == "grid" else n_trials,
            "objective": {"metric": metric, "direction": direction}, "pruner": {"kind": pruner},
            "parallel": parallel}


class SweepPresenter(QObject):
    summaryReady = Signal(object)   # core.sweep.study.SweepSummary
    failed = Signal(str)

    def __init__(self, context, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._task: Task | None = None

    @property
    def sweeps_dir(self) -> Path:
        return self.context.workspace.sweeps_dir

    # ---- starting ------------------------------------------------------------------------------------
    def check(self, spec: dict) -> str:
        """'' when `spec` can run; else the errors, one a line (the same checks `minimind sweep` makes, and one
        run per device: its trials would share the device with a run training here)."""
        from core.sweep.spec import SweepSpecError, load_sweep_spec
        from studio.worker.run_manager import live_local_run, running_sweep

        probe = self.sweeps_dir / ".check.json"
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text(json.dumps(spec))
        try:
            load_sweep_spec(probe)
        except SweepSpecError as exc:
            return str(exc).replace(f"{probe}:", "line ")
        finally:
            probe.unlink(missing_ok=True)
        busy = live_local_run(self.context.store)
        if busy is not None:
            return f"Run {busy} is training on this device: start the sweep when it has finished (one run per device)."
        sweep = running_sweep(self.sweeps_dir)
        if sweep is not None:
            return f"Sweep {sweep.name} is running on this device: start this one when it has finished."
        return ""

    def start(self, spec: dict) -> Path:
        """Write the spec into a new sweep folder and start `minimind sweep` on it, detached; its folder."""
        from core.process_identity import process_start_ticks
        from core.sweep.study import sweep_id_for
        from studio.worker.command import cli_command, trainer_environment
        from studio.worker.run_manager import SWEEP_STARTED_FILE
        from studio.worker.spawn import spawn_detached

        sweep_dir = self.sweeps_dir / sweep_id_for(spec.get("name") or "sweep")
        sweep_dir.mkdir(parents=True, exist_ok=False)
        spec_file = sweep_dir / "spec.json"
        spec_file.write_text(json.dumps(spec, indent=2))
        argv = cli_command(["sweep", str(spec_file), "--out", str(sweep_dir),  # the packaged app: itself, --cli
                            "--runs-dir", str(self.context.workspace.runs_dir)])
        pid = spawn_detached(argv, sweep_dir, trainer_environment(), sweep_dir / "stdout.log",
                             sweep_dir / "stderr.log")
        # the queue treats the sweep as running from now on, before its process has taken sweep.lock
        (sweep_dir / SWEEP_STARTED_FILE).write_text(json.dumps({"pid": pid, "start_ticks": process_start_ticks(pid)}))
        self.context.statusMessage.emit(f"Sweep started in {sweep_dir}")
        return sweep_dir

    # ---- reading ---------------------------------------------------------------------------------------
    def sweep_dirs(self) -> list[Path]:
        """Sweeps of this workspace: those in sweeps/ and those the store's trials name, newest first."""
        found = {p.parent for p in self.sweeps_dir.glob("*/sweep.json")}
        found |= {Path(t.sweep_dir) for t in self.context.store.sweep_trials() if t.sweep_dir}
        return sorted((p for p in found if (p / "sweep.json").is_file()), key=lambda p: p.stat().st_mtime,
                      reverse=True)

    def load(self, sweep_dir: Path) -> None:
        """Read the study off the UI thread; `summaryReady` (or `failed`) follows. New trials are imported."""
        from core.sweep.study import sweep_summary

        if self._task is not None and self._task.is_running():
            return
        self._task = Task(lambda progress, cancelled: sweep_summary(Path(sweep_dir)), parent=self)
        self._task.succeeded.connect(self._loaded)
        self._task.failed.connect(self.failed)
        self._task.start()

    def _loaded(self, summary) -> None:
        self.import_trials(summary)
        self.summaryReady.emit(summary)

    def import_trials(self, summary) -> list[str]:
        """Ask the run library to import trial run folders the store does not have yet (the run manager follows live
        ones)."""
        known = {Path(r.run_dir).resolve() for r in self.context.store.list_runs()}
        asked = []
        for trial in summary.trials:
            run_dir = Path(trial.run_dir) if trial.run_dir else None
            if run_dir and (run_dir / "events.jsonl").is_file() and run_dir.resolve() not in known:
                self.context.library.import_run_dir_async(run_dir)
                asked.append(str(run_dir))
        return asked

    # ---- the sweep process -----------------------------------------------------------------------------
    @staticmethod
    def running_pid(sweep_dir: Path) -> int | None:
        """The pid of the `minimind sweep` process that holds the folder's lock, or None when none runs."""
        from core.sweep.study import running_sweep_pid

        return running_sweep_pid(sweep_dir)

    def stop(self, sweep_dir: Path) -> bool:
        """SIGTERM to the sweep process: it stops its running trials (each saves a checkpoint) and exits;
        starting the same sweep again (`minimind sweep SPEC --out DIR`) resumes it."""
        pid = self.running_pid(sweep_dir)
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        self.context.statusMessage.emit(f"Stopping the sweep in {sweep_dir}")
        return True
