"""RunStore: the studio's SQLite database (WAL) of runs, metrics, events, checkpoints, exports and datasets.

Writes come in batches (``add_events`` stores a whole poll's worth of events in one transaction) so the UI thread
spends microseconds per event. A database that cannot be opened is moved aside and rebuilt from the runs'
events.jsonl files (see ``studio.store.recovery``): the events files are the source of truth, the DB an index.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from sqlalchemy import create_engine, delete, event, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.event_schema import EVENTS, validate_event
from studio.store.models import Base, Checkpoint, Dataset, Event, Export, Metric, Run, SweepTrial, TimeEstimate


def _sqlite_engine(db_path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{db_path}", future=True)
    wal = {"set": False}

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # every pooled connection gets the same settings
        cur = dbapi_conn.cursor()
        if not wal["set"]:  # WAL is a property of the file: set once. Setting it again on every new pooled
            cur.execute("PRAGMA journal_mode=WAL")  # connection waited for the writer's lock (159 ms on the
            wal["set"] = True                       # UI thread in bench.ui_stall). Readers never block the writer.
        cur.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: durable across app crashes, fast commits
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=5000")
        cur.close()

    return engine


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if not math.isnan(number) else None


def _int_field(ev: dict, key: str) -> int | None:
    value = ev.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{ev.get('type')} event: field {key!r} must be an integer, got {value!r}")
    try:
        number = int(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{ev.get('type')} event: field {key!r} must be an integer, got {value!r}") from None
    if not -2**63 <= number < 2**63:  # SQLite's INTEGER; a larger one would fail the whole batch, every poll
        raise ValueError(f"{ev.get('type')} event: field {key!r} is out of range ({value!r})")
    return number


def coerce_event(ev: Any) -> dict:
    """A copy of a schema-v1 event with the defaults the store folds (step 0, time now, metrics {}), or ValueError
    saying what is wrong: a field of the wrong type (``core.event_schema.validate_event``), an integer SQLite
    cannot hold, or something JSON cannot. Events come from files other programs wrote: nothing is trusted."""
    problem = validate_event(ev)
    if problem:
        raise ValueError(problem)
    out = dict(ev)
    for key in ("step", *(k for k, spec in EVENTS.get(ev["type"], {}).items() if spec.type is int)):
        if key in ev:
            out[key] = _int_field(ev, key)
    out["step"] = out.get("step") or 0
    out["time"] = float(ev.get("time") or time.time())
    if ev["type"] in ("metric", "eval"):
        out["metrics"] = ev.get("metrics") or {}
    try:
        json.dumps(ev)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{ev['type']} event cannot be stored as JSON ({exc})") from None
    return out


def _preview(ev: Any) -> str:
    try:
        return json.dumps(ev)[:200]
    except (TypeError, ValueError):
        return repr(ev)[:200]


class RunStore:
    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = _sqlite_engine(self.db_path)
        Base.metadata.create_all(self.engine)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        # Set by studio.store.recovery.open_store when the DB had to be rebuilt; shown to the user once.
        self.recovery_message: str | None = None

    def close(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._session()

    def check_integrity(self) -> str:
        """'ok' or SQLite's description of the damage (raises sqlalchemy.exc.DatabaseError on a non-database)."""
        with self.engine.connect() as conn:
            return str(conn.execute(text("PRAGMA quick_check")).scalar())

    def journal_mode(self) -> str:
        with self.engine.connect() as conn:
            return str(conn.execute(text("PRAGMA journal_mode")).scalar())

    # ------------------------------------------------------------------ runs
    def create_run(self, run_id: str, *, run_dir: Path | str, config: dict | None = None, name: str = "",
                   method: str = "", status: str = "queued", status_message: str = "",
                   parent_run_id: str | None = None, init_checkpoint: str | None = None, n_gpus: int = 1,
                   created_at: float | None = None) -> Run:
        run = Run(id=run_id, name=name or run_id, method=method, status=status, status_message=status_message,
                  config_json=json.dumps(config or {}), run_dir=str(run_dir), parent_run_id=parent_run_id,
                  init_checkpoint=init_checkpoint, n_gpus=n_gpus, created_at=created_at or time.time(),
                  last_step=0, events_offset=0)
        with self.session() as s, s.begin():
            s.add(run)
        return run

    def get_run(self, run_id: str) -> Run | None:
        with self.session() as s:
            return s.get(Run, run_id)

    def list_runs(self, statuses: Iterable[str] | None = None) -> list[Run]:
        query = select(Run).order_by(Run.created_at.desc())
        if statuses is not None:
            query = query.where(Run.status.in_(list(statuses)))
        with self.session() as s:
            return list(s.scalars(query))

    def update_run(self, run_id: str, **fields: Any) -> None:
        if "config" in fields:
            fields["config_json"] = json.dumps(fields.pop("config"))
        with self.engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == run_id).values(**fields))

    def delete_run(self, run_id: str) -> None:
        with self.engine.begin() as conn:
            for table in (Metric, Event, Checkpoint, SweepTrial):
                conn.execute(delete(table).where(table.run_id == run_id))
            conn.execute(delete(Run).where(Run.id == run_id))

    def run_config(self, run_id: str) -> dict:
        run = self.get_run(run_id)
        return json.loads(run.config_json or "{}") if run else {}

    # ---------------------------------------------------------------- events
    def add_events(self, run_id: str, events: list[dict], offset: int | None = None) -> dict:
        """Store a batch of schema-v1 events in one transaction and fold them into the run's row.

        ``offset`` (bytes of events.jsonl consumed) is saved in the same transaction, so a crash can never
        store an event twice or skip one. An event whose fields have the wrong type (``coerce_event``) is
        skipped and described in ``changes["bad"]``; the caller reports it like a line that is not JSON.
        Returns what changed: ``{"checkpoints": [abs paths], "finished": status | None, "started": bool,
        "bad": [descriptions], "events": [the stored events, coerced]}``.
        """
        changes: dict[str, Any] = {"checkpoints": [], "finished": None, "started": False, "bad": [],
                                   "events": []}
        with self.session() as s, s.begin():
            run = s.get(Run, run_id)
            if run is None:
                raise KeyError(f"no run {run_id!r} in {self.db_path}")
            metric_rows, event_rows, checkpoint_rows = [], [], []
            for raw in events:
                try:
                    ev = coerce_event(raw)
                except ValueError as exc:  # one malformed event must not stop the run's other events
                    changes["bad"].append(f"{exc}: {_preview(raw)}")
                    continue
                changes["events"].append(ev)
                kind, step, t = ev["type"], ev["step"], ev["time"]
                run.last_event_time = t
                if kind in ("metric", "eval"):
                    for name, value in ev["metrics"].items():
                        number = _finite(value)
                        if number is None:
                            continue
                        metric_rows.append({"run_id": run_id, "step": step, "name": str(name), "value": number,
                                            "time": t})
                        if name == "loss" and (run.best_loss is None or number < run.best_loss):
                            run.best_loss = number
                    run.last_step = max(run.last_step or 0, step)
                    continue
                event_rows.append({"run_id": run_id, "type": kind, "step": step, "time": t,
                                   "payload_json": json.dumps(ev)})
                if kind == "run_started":
                    if ev.get("resumed_from") is not None:  # replayed steps: keep only the new copies
                        metric_rows = [r for r in metric_rows if r["step"] <= ev["resumed_from"]]
                    self._fold_started(s, run, ev, t)
                    changes["started"] = True
                elif kind == "checkpoint" and ev.get("path"):
                    path = Path(run.run_dir) / str(ev["path"])
                    checkpoint_rows.append({"run_id": run_id, "step": step, "path": str(path), "time": t})
                    changes["checkpoints"].append(str(path))
                    run.last_step = max(run.last_step or 0, step)
                elif kind == "run_finished":
                    run.status = str(ev.get("status") or "completed")
                    run.status_message = str(ev.get("message") or "")
                    run.finished_at = t
                    changes["finished"] = run.status
            if metric_rows:
                s.execute(insert(Metric.__table__), metric_rows)  # Core executemany
            if event_rows:
                s.execute(insert(Event.__table__), event_rows)
            for row in checkpoint_rows:  # re-announced checkpoints (same path) are not duplicated
                exists = s.scalar(select(Checkpoint.id).where(Checkpoint.run_id == run_id,
                                                              Checkpoint.path == row["path"]))
                if exists is None:
                    s.add(Checkpoint(**row))
            if offset is not None:
                run.events_offset = offset
        return changes

    @staticmethod
    def _fold_started(s: Session, run: Run, ev: dict, t: float) -> None:
        resumed = ev.get("resumed_from")
        if resumed is not None:
            # Steps logged after the checkpoint we resume from are replayed by the trainer: drop the old copies
            # so curves show one line, not a loop back.
            s.execute(delete(Metric).where(Metric.run_id == run.id, Metric.step > resumed))
            run.last_step = resumed
        run.resumed_from = resumed
        run.status = "running"
        run.status_message = ""
        run.finished_at = None
        run.started_at = run.started_at or t
        if ev.get("method"):
            run.method = str(ev["method"])
        if ev.get("total_steps") is not None:
            run.total_steps = ev["total_steps"]
        if ev.get("pid") and not run.pid:  # the pid the studio launched (torchrun, not rank 0) wins
            run.pid, run.pid_start_ticks = ev["pid"], ev.get("pid_start_ticks")
        elif ev.get("pid") == run.pid and run.pid_start_ticks is None:
            run.pid_start_ticks = ev.get("pid_start_ticks")
        if ev.get("device"):
            run.device = str(ev["device"])
        if ev.get("config") and run.config_json in ("", "{}"):
            run.config_json = json.dumps(ev["config"])
        link = ev["config"].get("sweep") if isinstance(ev.get("config"), dict) else None
        if isinstance(link, dict) and isinstance(link.get("id"), str):  # a sweep's trial: lineage shows the sweep
            trial = link.get("trial")
            s.merge(SweepTrial(run_id=run.id, sweep_id=link["id"], sweep_dir=str(link.get("dir") or ""),
                               trial=trial if isinstance(trial, int) and not isinstance(trial, bool) else 0))

    # --------------------------------------------------------------- queries
    def metric_names(self, run_id: str) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(Metric.name).where(Metric.run_id == run_id).distinct().order_by(Metric.name))
            return [r[0] for r in rows]

    def metric_series(self, run_id: str, name: str, after_step: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(steps int64, values float64) of one metric, ordered by step; raw DB-API rows, no ORM objects."""
        sql = "SELECT step, value FROM metric WHERE run_id = ? AND name = ?"
        params: tuple = (run_id, name)
        if after_step is not None:
            sql += " AND step > ?"
            params += (after_step,)
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(sql + " ORDER BY step, id", params).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        arr = np.asarray(rows, dtype=np.float64)
        return arr[:, 0].astype(np.int64), arr[:, 1]

    def events(self, run_id: str, types: Iterable[str] | None = None, limit: int = 50) -> list[dict]:
        """The newest ``limit`` raw events (newest last), optionally of some types only."""
        query = select(Event.payload_json).where(Event.run_id == run_id)
        if types is not None:
            query = query.where(Event.type.in_(list(types)))
        query = query.order_by(Event.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [json.loads(r[0]) for r in conn.execute(query)]
        return rows[::-1]

    def preparation(self, run_id: str) -> dict | None:
        """The run's newest ``prepare`` event while it is still preparing its data (none once training has
        started or the run has finished): what the Runs table, the status bar and the guide show then."""
        newest = self.events(run_id, ["prepare", "run_started", "run_finished"], limit=1)
        return newest[0] if newest and newest[0]["type"] == "prepare" else None

    def rank_processes(self, run_id: str) -> list[tuple[int, int | None]]:
        """(pid, start ticks) of every rank the run's newest ``run_started`` lists in ``ranks`` (torchrun runs;
        empty before it arrives or for an older trainer). Kept in that event's stored payload, so databases made
        before the field existed open unchanged. Malformed entries are skipped: the file was written by another
        program, and these pids are about to be signalled (after ``studio.worker.pids`` checks their ticks)."""
        started = self.events(run_id, ["run_started"], limit=1)
        ranks = started[0].get("ranks") if started else None
        out = []
        for entry in ranks if isinstance(ranks, list) else ():
            try:
                pid, ticks = _int_field(entry, "pid"), _int_field(entry, "pid_start_ticks")
            except (ValueError, AttributeError):  # AttributeError: an entry that is not an object
                continue
            if pid is not None and pid > 0:
                out.append((pid, ticks))
        return out

    def samples(self, run_id: str, limit: int = 500) -> list[dict]:
        """RL rollouts, one row per sample: step, prompt, completion, reward, rewards (breakdown)."""
        out = []
        for ev in self.events(run_id, ["sample"], limit=limit):
            for sample in ev.get("samples") or []:
                out.append({"step": ev.get("step", 0), "prompt": sample.get("prompt", ""),
                            "completion": sample.get("completion", ""), "reward": sample.get("reward"),
                            "rewards": sample.get("rewards") or {}})
        return out

    def checkpoints(self, run_id: str) -> list[Checkpoint]:
        with self.session() as s:
            return list(s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id).order_by(Checkpoint.step)))

    def checkpoint_rows(self) -> list[tuple[str, str, str, str]]:
        """(run id, run name, method, checkpoint path) of every stored checkpoint in one query, newest run
        first and each run's newest step first. The model pickers of four panes read this on every run change;
        a query per run cost ~30 ms per picker at 100 runs."""
        query = (select(Run.id, Run.name, Run.method, Checkpoint.path)
                 .join(Checkpoint, Checkpoint.run_id == Run.id)
                 .order_by(Run.created_at.desc(), Run.id, Checkpoint.step.desc()))
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]

    def lineage(self, run_id: str) -> list[Run]:
        """Ancestors by ``parent_run_id``, oldest first, ending with the run itself (cycles are cut)."""
        chain, seen, current = [], set(), run_id
        while current and current not in seen:
            seen.add(current)
            run = self.get_run(current)
            if run is None:
                break
            chain.append(run)
            current = run.parent_run_id
        return chain[::-1]

    def children(self, run_id: str) -> list[Run]:
        with self.session() as s:
            return list(s.scalars(select(Run).where(Run.parent_run_id == run_id).order_by(Run.created_at)))

    def sweep_trials(self) -> list[SweepTrial]:
        """Every run that is a sweep's trial, by sweep then trial number."""
        with self.session() as s:
            return list(s.scalars(select(SweepTrial).order_by(SweepTrial.sweep_id, SweepTrial.trial)))

    # ------------------------------------------------------ exports/datasets
    def add_export(self, path: str, format: str, run_id: str | None = None, checkpoint_path: str = "",
                   meta: dict | None = None) -> None:
        with self.session() as s, s.begin():
            s.add(Export(path=str(path), format=format, run_id=run_id, checkpoint_path=str(checkpoint_path),
                         created_at=time.time(), meta_json=json.dumps(meta or {})))

    def exports(self) -> list[Export]:
        with self.session() as s:
            return list(s.scalars(select(Export).order_by(Export.created_at.desc())))

    def add_dataset(self, path: str, name: str = "", kind: str = "", records: int | None = None,
                    tokens: int | None = None, meta: dict | None = None) -> None:
        with self.session() as s, s.begin():
            existing = s.scalar(select(Dataset).where(Dataset.path == str(path)))
            row = existing or Dataset(path=str(path), created_at=time.time())
            row.name, row.kind, row.records, row.tokens = name or Path(path).name, kind, records, tokens
            row.meta_json = json.dumps(meta or {})
            s.add(row)

    def datasets(self) -> list[Dataset]:
        with self.session() as s:
            return list(s.scalars(select(Dataset).order_by(Dataset.created_at.desc())))

    # ------------------------------------------------------- time estimates
    def add_time_estimate(self, config: dict, seconds: float, meta: dict | None = None) -> None:
        """Remember pre-flight's wall-time estimate for ``config`` (replacing an older one for the same key)."""
        with self.session() as s, s.begin():
            s.merge(TimeEstimate(key=time_estimate_key(config), seconds=float(seconds),
                                 meta_json=json.dumps(meta or {}), created_at=time.time()))

    def time_estimate(self, config: dict) -> dict | None:
        """{"seconds", **meta} of the latest estimate made for this config, or None."""
        with self.session() as s:
            row = s.get(TimeEstimate, time_estimate_key(config))
            return {"seconds": row.seconds, **json.loads(row.meta_json or "{}")} if row is not None else None


# The fields a run's wall time depends on; the run folder, its name and the like do not count.
TIME_FIELDS = ("method", "model", "init", "batch_size", "max_steps", "epochs", "device", "precision",
               "data.files", "data.seq_len", "data.max_len", "optim.accumulation", "method_options")


def time_estimate_key(config: dict) -> str:
    import hashlib

    def get(path: str):
        value = config
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    body = json.dumps({f: get(f) for f in TIME_FIELDS}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:24]
