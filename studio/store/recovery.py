"""Opening studio.db safely, and rebuilding it from the runs' events.jsonl files.

The events files in runs/*/ are the source of truth; studio.db is an index over them. So a database SQLite
cannot read is moved aside (studio.db.corrupt-<time>, with its -wal/-shm), a fresh one is created and every run
folder is imported again. Nothing but the index is lost, and the user is told what happened and where the old
file is.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy.exc import DatabaseError

from core.event_schema import parse_event_line
from core.process_identity import pid_alive
from studio.store.run_store import RunStore
from studio.store.tailer import EventTailer

EVENTS_FILE = "events.jsonl"


def stderr_tail(run_dir: Path, lines: int = 5) -> str:
    try:
        text = (Path(run_dir) / "stderr.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def report_bad_lines(run_dir: Path, bad_lines: list[str], bad_events: list[str]) -> None:
    """Lines of events.jsonl that are not (valid) events go where the run's messages are read: stderr.log."""
    if not bad_lines and not bad_events:
        return
    with open(Path(run_dir) / "stderr.log", "a", encoding="utf-8") as err:
        err.writelines(f"[events.jsonl: not an event] {line[:200]}\n" for line in bad_lines)
        err.writelines(f"[events.jsonl: bad event] {text}\n" for text in bad_events)


def import_run_dir(store: RunStore, run_dir: Path, run_id: str | None = None,
                   problems: list[str] | None = None) -> str:
    """Add a run folder (trained by the studio or the CLI) to the store and return its id.

    The status comes from its run_finished event; without one the run is ``running`` if its process is alive
    and verifiably the trainer (the run manager re-attaches it) and ``interrupted`` otherwise (resumable from
    its last checkpoint). Lines that are not valid events are skipped, appended to the folder's stderr.log and
    counted in ``problems`` (when given).
    """
    run_dir = Path(run_dir).resolve()
    events_path = run_dir / EVENTS_FILE
    if not events_path.is_file():
        raise ValueError(f"{run_dir}: no {EVENTS_FILE} here; choose a run folder written by the trainer "
                         f"(it holds {EVENTS_FILE}, checkpoints/ and config.json)")
    tailer = EventTailer(events_path)
    events, bad = tailer.read_all()
    started = next((e for e in events if e.get("type") == "run_started"), {})
    run_id = run_id or run_dir.name
    if store.get_run(run_id) is not None:
        raise ValueError(f"{run_dir}: a run named {run_id!r} is already in this workspace")
    config = started.get("config")
    config_file = run_dir / "config.json"
    if config_file.is_file():
        try:
            config = json.loads(config_file.read_text())
        except ValueError:
            pass
    config = config if isinstance(config, dict) else {}
    try:
        created = float(started.get("time") or events_path.stat().st_mtime)
    except (TypeError, ValueError):
        created = events_path.stat().st_mtime
    init = config.get("init")
    store.create_run(run_id, run_dir=run_dir, config=config, name=run_id,
                     method=str(started.get("method") or config.get("method") or ""), status="running",
                     init_checkpoint=init if isinstance(init, str) else None, created_at=created)
    try:
        changes = store.add_events(run_id, events, offset=tailer.offset)
    except BaseException:
        store.delete_run(run_id)  # no half-imported row: importing the folder again must work
        raise
    report_bad_lines(run_dir, bad, changes["bad"])
    if problems is not None and (bad or changes["bad"]):
        problems.append(f"{run_dir}: {len(bad) + len(changes['bad'])} line(s) of {EVENTS_FILE} were not valid "
                        f"events and were skipped (listed in {run_dir / 'stderr.log'})")
    run = store.get_run(run_id)
    if run.status in ("running", "starting", "queued", "stopping"):
        if pid_alive(run.pid, run.pid_start_ticks):  # a reused pid (another program) does not count
            store.update_run(run_id, status="running")
        else:
            mark_dead(store, run_id)
    return run_id


def _stdout_verdict(run_dir: Path) -> dict | None:
    """The run_finished the trainer printed on stdout only: before it knows its run folder (a config error) it
    cannot write events.jsonl, but it still says what was wrong."""
    try:
        with (Path(run_dir) / "stdout.log").open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 65536))
            lines = fh.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        event = parse_event_line(raw)
        if event is not None and event["type"] == "run_finished":
            return event
    return None


def mark_dead(store: RunStore, run_id: str) -> str:
    """A run whose process is gone without run_finished: interrupted (had started) or failed (never started)."""
    run = store.get_run(run_id)
    tail = stderr_tail(Path(run.run_dir))
    verdict = _stdout_verdict(Path(run.run_dir)) if run.started_at is None else None
    if verdict is not None:
        store.update_run(run_id, status=str(verdict.get("status") or "failed"),
                         status_message=str(verdict.get("message") or tail), finished_at=time.time())
        return str(verdict.get("status") or "failed")
    if run.started_at is not None:
        status, message = "interrupted", "the training process ended without finishing; resume continues from " \
                                         "its last checkpoint"
    else:
        status, message = "failed", "the training process ended before it started"
    if tail:
        message += f"\nstderr.log ends with:\n{tail}"
    store.update_run(run_id, status=status, status_message=message, finished_at=run.last_event_time or time.time())
    return status


def reimport_runs(store: RunStore, runs_dir: Path, problems: list[str] | None = None) -> list[str]:
    """Import every runs/*/events.jsonl; a broken folder is skipped (its problem is not everyone's) and
    described in ``problems``."""
    imported = []
    if not runs_dir.is_dir():
        return imported
    for events_path in sorted(runs_dir.glob(f"*/{EVENTS_FILE}")):
        try:
            imported.append(import_run_dir(store, events_path.parent, problems=problems))
        except Exception as exc:  # noqa: BLE001 - any damage in one folder must not stop the rebuild
            if problems is not None:
                problems.append(f"{events_path.parent}: not imported ({type(exc).__name__}: {exc}); fix or "
                                f"remove the folder, then use File > Import run folder")
    return imported


def _move_aside(db_path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db_path.with_name(f"{db_path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(db_path) + suffix)
        if src.exists():
            src.rename(Path(str(target) + suffix))
    return target


def open_store(db_path: Path, runs_dir: Path) -> RunStore:
    """Open (or create) studio.db; rebuild it from runs/ when it is unreadable.

    ``store.recovery_message`` is set when a rebuild happened: say it to the user once.
    """
    db_path = Path(db_path)
    try:
        store = RunStore(db_path)
        verdict = store.check_integrity()
        if verdict == "ok":
            return store
        store.close()
        reason = f"SQLite integrity check failed: {verdict}"
    except DatabaseError as exc:
        reason = f"SQLite could not read it: {exc.orig if getattr(exc, 'orig', None) else exc}"
        try:
            store.close()  # type: ignore[possibly-undefined]
        except Exception:
            pass
    moved = _move_aside(db_path)
    store = RunStore(db_path)
    problems: list[str] = []
    runs = reimport_runs(store, runs_dir, problems)
    store.recovery_message = (
        f"The studio database {db_path} could not be used ({reason}). It was moved to {moved} and a new one "
        f"was built from the run folders in {runs_dir}: {len(runs)} run(s) re-imported with their metrics. "
        "Exports and dataset entries are rediscovered when you open those panes.")
    if problems:
        store.recovery_message += "\nProblems:\n" + "\n".join(f"- {p}" for p in problems)
    return store
