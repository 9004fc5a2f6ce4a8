"""The sweep folder and its Optuna study: where things are, opening the study (Optuna's RDB storage in a SQLite
file, so a killed sweep resumes), and reading it back for people (`sweep_summary`: trials, the best one and the
parameters' importance from `optuna.importance.get_param_importances`).

A sweep folder holds `spec.yaml` (or the spec it was started with, copied), `sweep.json` (its id and the spec it
was made from), `study.db` (the study) and `sweep.lock` (held while a sweep process runs it).
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SWEEP_FILE = "sweep.json"
STUDY_FILE = "study.db"
LOCK_FILE = "sweep.lock"
RUN_DIR_ATTR = "run_dir"    # trial user attribute: the trial's run folder
REASON_ATTR = "reason"      # trial user attribute: why it failed or was pruned


def sweep_id_for(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "sweep"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}"


def trial_run_name(sweep_id: str, number: int) -> str:
    return f"{sweep_id}-t{number:03d}"


def storage(sweep_dir: Path):
    """Optuna's RDB storage on the folder's study.db. A reader (the studio) and the sweep process share the file:
    SQLite's busy timeout makes each wait for the other's write instead of failing."""
    import optuna

    url = f"sqlite:///{Path(sweep_dir).resolve() / STUDY_FILE}"
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}})


def read_sweep_file(sweep_dir: Path) -> dict | None:
    try:
        return json.loads((Path(sweep_dir) / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def sweep_lock_held(sweep_dir: Path) -> bool:
    """Whether a `minimind sweep` process holds the folder's lock now (False where there is no fcntl, as on
    Windows, where sweeps do not run, or when the lock file cannot be read)."""
    lock = Path(sweep_dir) / LOCK_FILE
    if not lock.is_file():
        return False
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(lock, "rb") as fh:  # flock works on a read-only descriptor; nothing is created or written
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def running_sweep_pid(sweep_dir: Path) -> int | None:
    """The pid of the `minimind sweep` process that holds the folder's lock, or None when none runs or its pid is
    not written yet (the lock is the truth: a pid written by a sweep that died is not reported)."""
    if not sweep_lock_held(sweep_dir):
        return None
    try:
        text = (Path(sweep_dir) / LOCK_FILE).read_text(encoding="utf-8").split()
    except OSError:
        return None
    return int(text[1]) if len(text) == 2 and text[1].isdigit() and sweep_lock_held(sweep_dir) else None


def load_study(sweep_dir: Path):
    """The sweep's study, read-only use (no sampler needed); ValueError when the folder holds none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    info = read_sweep_file(sweep_dir)
    if info is None or not (Path(sweep_dir) / STUDY_FILE).is_file():
        raise ValueError(f"{sweep_dir}: not a sweep folder (it has no {SWEEP_FILE} and {STUDY_FILE}); start one "
                         "with `minimind sweep SPEC --out DIR`")
    return optuna.load_study(study_name=info["id"], storage=storage(sweep_dir))


@dataclass
class TrialRow:
    number: int
    state: str                      # COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    value: float | None
    params: dict[str, Any]
    run_dir: str = ""
    reason: str = ""
    last_step: int | None = None    # the last step it reported the objective at
    last_value: float | None = None  # the value reported there (a pruned or running trial has no final value)

    @property
    def shown_value(self) -> float | None:
        return self.value if self.value is not None else self.last_value


@dataclass
class SweepSummary:
    id: str
    sweep_dir: str
    metric: str
    direction: str
    n_trials: int
    trials: list[TrialRow] = field(default_factory=list)
    best: TrialRow | None = None
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""       # why there are none yet

    def count(self, state: str) -> int:
        return sum(t.state == state for t in self.trials)


def sweep_summary(sweep_dir: Path, importances: bool = True) -> SweepSummary:
    """Everything the CLI's table and the studio's sweep view show, read from the study."""
    from optuna.trial import TrialState

    study = load_study(sweep_dir)
    info = read_sweep_file(sweep_dir) or {}
    spec = info.get("spec") or {}
    objective = spec.get("objective") or {}
    summary = SweepSummary(info.get("id", study.study_name), str(sweep_dir), objective.get("metric", ""),
                           objective.get("direction", "minimize"), int(info.get("n_trials") or 0))
    for t in study.get_trials(deepcopy=False):
        steps = sorted(t.intermediate_values)
        summary.trials.append(TrialRow(t.number, t.state.name, t.value, dict(t.params),
                                       str(t.user_attrs.get(RUN_DIR_ATTR, "")), str(t.user_attrs.get(REASON_ATTR, "")),
                                       steps[-1] if steps else None,
                                       t.intermediate_values[steps[-1]] if steps else None))
    done = [r for r in summary.trials if r.state == TrialState.COMPLETE.name and r.value is not None
            and math.isfinite(r.value)]
    if done:
        pick = min if summary.direction == "minimize" else max
        summary.best = pick(done, key=lambda r: r.value)
    if importances:
        summary.importances, summary.importance_note = param_importances(study)
    return summary


def param_importances(study) -> tuple[dict[str, float], str]:
    """Optuna's own analysis (fANOVA by default): {param: share of the objective's variance}, or a note saying
    why there is none yet."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"parameter importance needs 2 finished trials ({len(complete)} so far)"
    try:
        return dict(optuna.importance.get_param_importances(study)), ""
    except (RuntimeError, ValueError) as exc:  # e.g. every trial drew the same value
        return {}, f"parameter importance not available: {exc}"


def format_summary(summary: SweepSummary) -> str:
    """The table `minimind sweep` prints at the end: one row per trial, the best, the importances."""
    names = sorted({k for t in summary.trials for k in t.params})
    head = ["trial", "state", summary.metric or "value"] + names + ["run"]
    rows = [[str(t.number), t.state, "" if t.shown_value is None else f"{t.shown_value:.4g}"]
            + [_cell(t.params.get(n)) for n in names] + [Path(t.run_dir).name if t.run_dir else ""]
            for t in summary.trials]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head] + rows]
    if summary.best is not None:
        lines.append(f"best: trial {summary.best.number}, {summary.metric} {summary.best.value:.4g} "
                     f"({summary.direction}), run {summary.best.run_dir}")
    if summary.importances:
        lines.append("parameter importance (optuna.importance.get_param_importances): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in summary.importances.items()))
    elif summary.importance_note:
        lines.append(summary.importance_note)
    return "\n".join(lines)


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)
