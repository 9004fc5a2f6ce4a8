"""RunManager: start, follow, stop, resume and queue training runs.

Only processes: what concerns a run's record and folder alone (clone, delete, import) is `studio.run_library`'s.

Process model (why, in docs/studio.md): every run is started *detached* — its own session, stdout/stderr to files
in the run folder, no pipe to the studio — and followed by tailing its events.jsonl every ``poll_ms``. A pipe
would tie the trainer to the studio (a dead reader turns the trainer's next print into SIGPIPE); a file does not,
so a studio crash never kills a run, and a live run and a re-attached one are followed by the same code.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, QTimer, Signal

from core.launch.scheduler import ENDED, SchedulerError, read_job
from core.launch.targets import TARGETS_FILE, workspace_cache_dir
from core.process_identity import identity_problem, looks_like_trainer, pid_alive, process_start_ticks
from core.sweep.study import LOCK_FILE, sweep_lock_held
from studio.store import ACTIVE_STATUSES, RunStore, mark_dead
from studio.store.tailer import EventTailer
from studio.worker.command import build_trainer_command, trainer_environment
from studio.worker.spawn import spawn_detached
from studio.worker.ingest import IngestWorker, ingest_once
from studio.worker.pids import SIGSTOP, child_processes, kill_process_group, send_signal
from studio.worker.remote import RemoteJobs, describe
from studio.workspace import Workspace

LIVE_STATUSES = ("starting", "running", "stopping")
# Keys a launch request may carry for the studio alone; the rest is the trainer's TrainConfig (extra="forbid").
STUDIO_KEYS = ("name", "n_gpus", "parent_run_id", "target")
CommandBuilder = Callable[..., list[str]]


def live_local_run(store: RunStore) -> str | None:
    """The id of a run training on this machine's device (a cluster run holds none of it), or None."""
    return next((r.id for r in store.list_runs(LIVE_STATUSES) if read_job(r.run_dir) is None), None)


SWEEP_STARTED_FILE = "studio_started.json"  # in a sweep folder: the process the studio spawned (pid, start ticks)


def sweep_running(sweep_dir: Path) -> bool:
    """Whether a sweep holds the device: its `minimind sweep` process holds the folder's lock, or the process the
    studio spawned for it is still starting (it takes the lock only once its imports and spec checks are done)."""
    if sweep_lock_held(sweep_dir):
        return True
    try:
        started = json.loads((Path(sweep_dir) / SWEEP_STARTED_FILE).read_text(encoding="utf-8"))
        return pid_alive(int(started["pid"]), started.get("start_ticks"))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def running_sweep(sweeps_dir: Path) -> Path | None:
    """A sweep folder under `sweeps_dir` whose sweep holds the device (`sweep_running`), or None."""
    folders = {p.parent for name in (LOCK_FILE, SWEEP_STARTED_FILE) for p in Path(sweeps_dir).glob(f"*/{name}")}
    return next((folder for folder in sorted(folders) if sweep_running(folder)), None)


def new_run_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")[:40] or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{os.urandom(2).hex()}"


class _Follow:
    """One followed run: whether this studio started it, and its rate for the ETA. (Its events tailer
    lives in the ingest thread.)"""

    def __init__(self, run_id: str, spawned: bool = False, job=None) -> None:
        self.run_id = run_id
        self.spawned = spawned  # this studio started the pid itself: its identity is known without /proc
        self.job = job  # a cluster run's JobRecord (launch.json): followed through its scheduler, not a pid
        self.job_line = ""  # the last status line the scheduler's answer gave
        # The run's (pid, start ticks), read once: the UI thread's poll must not query SQLite every tick.
        self.identity: tuple[int, int | None] | None = None
        self.killed = False
        self.draining = False  # the process ended; waiting for the ingest thread to store its last lines
        self.rate_origin: tuple[float, int] | None = None  # (time, step) of the first metric seen


class RunManager(QObject):
    runsChanged = Signal()
    runUpdated = Signal(str)
    eventsIngested = Signal(str, list)
    checkpointAdded = Signal(str, str)
    runFinished = Signal(str, str)  # run_id, final status
    _followRequested = Signal(str, str, int)  # to the ingest thread: run_id, events.jsonl, offset
    _drainRequested = Signal(str)
    _stopRequested = Signal()

    def __init__(self, store: RunStore, runs_dir: Path, command_builder: CommandBuilder = build_trainer_command,
                 poll_ms: int = 250, parent: QObject | None = None, targets_path: Path | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.runs_dir = Path(runs_dir)
        # Launch targets live in the workspace (runs/'s parent) unless told otherwise; see docs/cluster.md.
        self.remote = RemoteJobs(targets_path or self.runs_dir.parent / TARGETS_FILE)
        self.command_builder = command_builder
        # A sweep started here runs its trials on this machine's device: queued runs wait for it too.
        self.sweeps_dir = Workspace(self.runs_dir.parent).sweeps_dir
        self._waiting_on_sweep: Path | None = None  # the sweep queued runs wait for; poll() watches its lock
        self._follows: dict[str, _Follow] = {}
        self._unsignalled: dict[str, str] = {}  # run id -> why Stop/Kill sent no signal (kept past mark_dead)
        self._worker = IngestWorker(store, poll_ms)
        self._thread = QThread()
        self._thread.setObjectName("run-ingest")
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.start)
        self._followRequested.connect(self._worker.follow)
        self._drainRequested.connect(self._worker.drain)
        self._stopRequested.connect(self._worker.stop, Qt.ConnectionType.BlockingQueuedConnection)
        self._worker.ingested.connect(self._on_ingested)
        self._worker.drained.connect(self._on_drained)
        self._thread.start()
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)
        self._timer = QTimer(self)  # the UI side only watches processes
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.poll)
        self._timer.start()

    def connect_context(self, context) -> None:
        """Forward this manager's signals to the StudioContext, serve its launch requests and follow the live runs
        its run library imports."""
        self.runsChanged.connect(context.runsChanged)
        self.runUpdated.connect(context.runUpdated)
        self.eventsIngested.connect(context.eventsIngested)
        self.checkpointAdded.connect(context.checkpointAdded)
        context.launchRequested.connect(lambda cfg: self.launch(cfg))
        context.library.runImported.connect(self.follow_imported)

    # -------------------------------------------------------------- launching
    def launch(self, config: dict, name: str | None = None, method: str | None = None,
               parent_run_id: str | None = None, init_checkpoint: str | None = None,
               n_gpus: int | None = None) -> str:
        """Create a run folder with config.json, queue the run and start it if the device is free."""
        config = dict(config)
        meta = {key: config.pop(key) for key in STUDIO_KEYS if key in config}  # TrainConfig forbids extras
        name = name or meta.get("name") or config.get("method") or "run"
        target = self.remote.target(meta.get("target"))  # TargetError names the file and the target
        run_id = new_run_id(name)
        run_dir = (Path(target.runs_dir) if getattr(target, "runs_dir", "") else self.runs_dir) / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        if target.kind == "local":
            config["run_dir"] = str(run_dir)  # the trainer writes events.jsonl and checkpoints/ here
            if isinstance(config.get("data"), dict) and not config["data"].get("cache_dir"):
                # the workspace's caches, where the Datasets pane prepares ahead: a ready one starts at once
                config["data"] = {**config["data"], "cache_dir": str(workspace_cache_dir(self.runs_dir.parent))}
            (run_dir / "config.json").write_text(json.dumps(config, indent=2))
        else:  # config.json names the folder as the nodes see it; launch.json records the target
            config = self.remote.prepare(target, run_dir, config)
        self.store.create_run(run_id, run_dir=run_dir, config=config, name=name,
                              method=method or str(config.get("method", "")), status="queued",
                              parent_run_id=parent_run_id or meta.get("parent_run_id"),
                              init_checkpoint=init_checkpoint or config.get("init"),
                              n_gpus=int(n_gpus or meta.get("n_gpus") or 1))
        self.runsChanged.emit()
        self.schedule()
        return run_id

    def schedule(self) -> None:
        """Start the oldest queued run when no run holds the device; tell the others why they wait."""
        queued = sorted(self.store.list_runs(["queued"]), key=lambda r: r.created_at)
        cluster = [run for run in queued if read_job(run.run_dir) is not None]
        for run in cluster:  # the cluster's scheduler queues them, not this machine's device
            self._start(run.id)
        queued = [run for run in queued if run not in cluster]
        if not queued:
            return
        busy = live_local_run(self.store)
        # a running sweep's trials hold the device, also between two trials
        self._waiting_on_sweep = running_sweep(self.sweeps_dir) if busy is None else None
        while busy is None and self._waiting_on_sweep is None and queued:  # a failed start must not block the rest
            head, queued = queued[0], queued[1:]
            if self._start(head.id):
                busy = head.id
        if busy is None and self._waiting_on_sweep is None:
            return
        for run in queued:
            reason = (f"waiting for run {busy} to finish (one run per device)" if busy is not None else
                      f"waiting for sweep {self._waiting_on_sweep.name} to finish (one run per device)")
            if run.status_message != reason:
                self.store.update_run(run.id, status_message=reason)
                self.runUpdated.emit(run.id)

    def _start(self, run_id: str) -> bool:
        run = self.store.get_run(run_id)
        run_dir = Path(run.run_dir)
        resume = run_dir if run.resume_pending else None
        job = read_job(run_dir)
        if job is not None:
            return self._submit(run, job)
        argv = self.command_builder(run_dir / "config.json", resume, run.n_gpus)
        with open(run_dir / "stderr.log", "ab") as err:
            err.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        try:
            pid = spawn_detached(argv, run_dir, trainer_environment(), run_dir / "stdout.log", run_dir / "stderr.log")
        except OSError as exc:
            self.store.update_run(run_id, status="failed", resume_pending=False,
                                  status_message=f"could not start {argv[0]}: {exc}")
            self.runUpdated.emit(run_id)
            self.runsChanged.emit()
            return False
        self.store.update_run(run_id, status="starting", status_message="", pid=pid, resume_pending=False,
                              pid_start_ticks=process_start_ticks(pid))
        self._follows[run_id] = _Follow(run_id, spawned=True)
        self._followRequested.emit(run_id, str(run_dir / "events.jsonl"), run.events_offset or 0)
        self.runUpdated.emit(run_id)
        self.runsChanged.emit()
        return True

    def _submit(self, run, job) -> bool:
        """A cluster run: (re)write its launch file and hand it to the scheduler (sbatch / sky launch)."""
        try:
            job = self.remote.submit(run.id, Path(run.run_dir), job, resume=bool(run.resume_pending))
        except (SchedulerError, ValueError, OSError) as exc:
            self.store.update_run(run.id, status="failed", resume_pending=False,
                                  status_message=f"could not submit to {job.target}: {exc}")
            self.runUpdated.emit(run.id)
            self.runsChanged.emit()
            return False
        self.store.update_run(run.id, status="starting", resume_pending=False, pid=None, pid_start_ticks=None,
                              status_message=f"submitted {job.launch_file} to {job.target} as job {job.job_id}")
        self._follows[run.id] = _Follow(run.id, job=job)
        self._followRequested.emit(run.id, str(Path(run.run_dir) / "events.jsonl"), run.events_offset or 0)
        self.runUpdated.emit(run.id)
        self.runsChanged.emit()
        return True

    # -------------------------------------------------------------- following
    def poll(self) -> None:
        """One UI tick: notice runs whose process ended and have the ingest thread store their last lines, and
        start the queue when the sweep it waited for has ended."""
        if self._waiting_on_sweep is not None and not sweep_running(self._waiting_on_sweep):
            self._waiting_on_sweep = None
            self.schedule()
        for follow in list(self._follows.values()):
            if not follow.draining and self._process_ended(follow):
                follow.draining = True
                self._drainRequested.emit(follow.run_id)

    def _on_drained(self, run_id: str) -> None:
        follow = self._follows.get(run_id)
        if follow is not None:
            self._finish(follow)

    def _on_ingested(self, run_id: str, events: list, changes: dict) -> None:
        """A stored batch (from the ingest thread, or synchronously at start-up): tell the panes."""
        follow = self._follows.get(run_id)
        metric = next((e for e in reversed(events) if e.get("type") == "metric"), None)
        if follow is not None and metric is not None and (follow.rate_origin is None or changes["started"]):
            follow.rate_origin = (float(metric.get("time", time.time())), int(metric.get("step", 0)))
        self.eventsIngested.emit(run_id, events)
        for path in changes["checkpoints"]:
            self.checkpointAdded.emit(run_id, path)
        self.runUpdated.emit(run_id)
        if changes["started"] or changes["finished"]:
            self.runsChanged.emit()

    def _ingest_now(self, run_id: str) -> int:
        """Store everything a run's events.jsonl holds beyond the DB's offset, on this thread; the new offset."""
        run = self.store.get_run(run_id)
        tailer = EventTailer(Path(run.run_dir) / "events.jsonl", run.events_offset or 0)
        events, changes = ingest_once(self.store, run_id, tailer, everything=True)
        if events:
            self._on_ingested(run_id, events, changes)
        return tailer.offset

    def _process_ended(self, follow: _Follow) -> bool:
        if follow.job is not None:
            return self._job_ended(follow)
        if follow.identity is None:
            run = self.store.get_run(follow.run_id)
            if run is None:
                return True
            if not run.pid:  # not launched yet as far as the DB knows: ask again next tick
                return True
            follow.identity = (run.pid, run.pid_start_ticks)
        pid, ticks = follow.identity
        return not pid_alive(pid, ticks, trusted=follow.spawned)

    def _job_ended(self, follow: _Follow) -> bool:
        """A cluster run ends when its scheduler says the job is over; 'unknown' (no connection) never ends it."""
        state = self.remote.state(follow.run_id, follow.job)
        if state is None:
            return False
        line = describe(follow.job, state)
        if line != follow.job_line and state.state != ENDED:
            follow.job_line = line
            run = self.store.get_run(follow.run_id)
            if run is not None and run.status in LIVE_STATUSES:
                self.store.update_run(follow.run_id, status_message=line)
                self.runUpdated.emit(follow.run_id)
        return state.state == ENDED

    def _trusted(self, run_id: str) -> bool:
        follow = self._follows.get(run_id)
        return follow is not None and follow.spawned

    def _finish(self, follow: _Follow) -> None:
        self._follows.pop(follow.run_id, None)
        self.remote.forget(follow.run_id)
        run = self.store.get_run(follow.run_id)
        if run is None:
            return
        if run.status in LIVE_STATUSES:  # ended without run_finished
            status = mark_dead(self.store, run.id)
            unsignalled = self._unsignalled.pop(run.id, None)
            if unsignalled:  # the studio could not tell whether the process ended: say what it did not do
                ended = self.store.get_run(run.id).status_message
                self.store.update_run(run.id, status_message=f"{unsignalled}\n{ended}")
            elif follow.killed:
                self.store.update_run(run.id, status_message="killed by the user; resume continues from the "
                                                             "last checkpoint")
        else:
            status = run.status
        self.runUpdated.emit(run.id)
        self.runsChanged.emit()
        self.runFinished.emit(run.id, status)
        self.schedule()

    # --------------------------------------------------------------- controls
    def stop(self, run_id: str) -> None:
        """Graceful stop: SIGTERM to each rank (the trainer itself when it runs alone); the engine saves a
        checkpoint at the next step boundary and emits run_finished(stopped)."""
        run = self.store.get_run(run_id)
        if run is None:
            return
        if run.status == "queued":
            self.store.update_run(run_id, status="stopped", status_message="removed from the queue",
                                  resume_pending=False)
        elif run.status in LIVE_STATUSES and self._cancel_job(run, kill=False):
            pass  # scancel / sky cancel: SIGTERM to every rank on every node, the engine checkpoints and stops
        elif run.status in LIVE_STATUSES and run.pid:
            self.store.update_run(run_id, status="stopping")
            # The ranks themselves, not torchrun: torchrun would SIGKILL them 30 s after forwarding a SIGTERM,
            # checkpoint written or not; told nothing, it sees its workers exit 0 and exits 0. A stop seen by any
            # rank stops them all (dist.any_rank). Only the pids, not their groups: DataLoader workers must not
            # die before the checkpoint is written. send_signal first checks each pid is still the run's.
            signalled = [send_signal(pid, signal.SIGTERM, start_ticks=ticks)
                         for pid, ticks in self._rank_processes(run)]
            if not any(signalled) and not send_signal(run.pid, signal.SIGTERM, start_ticks=run.pid_start_ticks,
                                                      trusted=self._trusted(run_id)):
                self._no_signal_sent(run, "Stop")  # a single process, or no rank known or verifiable (no /proc)
        self.runUpdated.emit(run_id)
        self.runsChanged.emit()

    def kill(self, run_id: str) -> None:
        """Immediate stop without checkpoint: SIGKILL to the run's process group and to each rank's (torchrun
        starts every rank in a session of its own, so killing torchrun's group alone leaves them training)."""
        run = self.store.get_run(run_id)
        if run is None or run.status not in LIVE_STATUSES:
            return
        follow = self._follows.get(run_id)
        if follow is not None:
            follow.killed = True
        if self._cancel_job(run, kill=True) or not run.pid:
            return
        ticks, trusted = run.pid_start_ticks, self._trusted(run_id)
        if run.n_gpus > 1 and SIGSTOP is not None:  # torchrun must not start a rank while its ranks are listed
            send_signal(run.pid, SIGSTOP, start_ticks=ticks, trusted=trusted)
        ranks = self._rank_processes(run)
        killed = kill_process_group(run.pid, ticks, trusted)
        for pid, rank_ticks in ranks:
            killed = kill_process_group(pid, rank_ticks) or killed
        if not killed:
            self._no_signal_sent(run, "Kill")

    def _no_signal_sent(self, run, action: str) -> None:
        """Say why a Stop or Kill reached no process: one not verifiably the run's is never signalled."""
        problem = identity_problem(run.pid, run.pid_start_ticks, self._trusted(run.id))
        if problem is None:
            return
        message = f"{action} sent no signal: {problem}. If it is this run's trainer, end it yourself."
        self._unsignalled[run.id] = message
        self.store.update_run(run.id, status_message=message)
        self.runUpdated.emit(run.id)

    def _cancel_job(self, run, kill: bool) -> bool:
        """Cancel a cluster run's job (False for a run on this machine). A scheduler that cannot be reached
        leaves the run as it is, with the reason in its status line."""
        job = read_job(run.run_dir)
        if job is None or not job.job_id:
            return False
        try:
            self.remote.cancel(job, kill=kill)
        except (SchedulerError, ValueError) as exc:
            self.store.update_run(run.id, status_message=f"could not cancel job {job.job_id}: {exc}")
        else:
            self.store.update_run(run.id, status="stopping", status_message=f"job {job.job_id} cancelled"
                                  + (" (SIGKILL)" if kill else "; the trainer saves a checkpoint first"))
        self.runUpdated.emit(run.id)
        self.runsChanged.emit()
        return True

    def _rank_processes(self, run) -> list[tuple[int, int | None]]:
        """(pid, start ticks) of the run's ranks: those its newest run_started lists, and, for a run this studio
        launched under torchrun, torchrun's children that run the trainer (the ranks before run_started names
        them, e.g. while they import torch, or after a resume whose run_started has not arrived yet). A
        single-process run's own children (compile workers) are never listed."""
        ranks = dict(self.store.rank_processes(run.id))
        if run.n_gpus > 1 and pid_alive(run.pid, run.pid_start_ticks, self._trusted(run.id)):
            ranks.update((pid, ticks) for pid, ticks in child_processes(run.pid) if looks_like_trainer(pid))
        return list(ranks.items())

    def resume(self, run_id: str) -> None:
        """Continue a finished/stopped/interrupted run in its own folder (``--resume run_dir``)."""
        run = self.store.get_run(run_id)
        if run is None or run.status in ACTIVE_STATUSES:
            return
        self.store.update_run(run_id, status="queued", status_message="", resume_pending=True, finished_at=None)
        self.runsChanged.emit()
        self.schedule()

    def follow_imported(self, run_id: str, error: str = "") -> None:
        """A run folder was just imported (``RunLibrary.runImported``): follow it when its trainer still runs."""
        run = self.store.get_run(run_id) if run_id else None
        if run is not None and run.status in LIVE_STATUSES and run_id not in self._follows:
            self._attach(run)
            self.runUpdated.emit(run_id)

    def _attach(self, run) -> _Follow:
        """Follow a run this studio did not start (re-attached or imported) from its stored offset."""
        follow = self._follows[run.id] = _Follow(run.id, job=read_job(run.run_dir))
        self._followRequested.emit(run.id, str(Path(run.run_dir) / "events.jsonl"), run.events_offset or 0)
        return follow

    # ------------------------------------------------------------ reconciling
    def reconcile(self) -> list[str]:
        """After a (re)start: catch up on live runs' events and re-attach them, settle dead ones, run the queue."""
        touched = []
        for run in self.store.list_runs(LIVE_STATUSES):
            if run.id in self._follows:
                continue
            # The backlog is read by the ingest thread (MAX_READ bytes per tick, so the window stays responsive
            # and the curves fill in as it goes); a dead run is drained there and then settled by _on_drained.
            follow = self._attach(run)
            if self._process_ended(follow):
                follow.draining = True
                self._drainRequested.emit(run.id)
            touched.append(run.id)
        self.schedule()  # a run still settling counts as active: the queue waits for _finish
        return touched

    # ---------------------------------------------------------------- queries
    def active_run_id(self) -> str | None:
        for run in self.store.list_runs(LIVE_STATUSES):
            return run.id
        return None

    def live_run_ids(self) -> list[str]:
        return [rid for rid, f in self._follows.items() if not self._process_ended(f)]

    def progress(self, run_id: str) -> tuple[int, int | None, float | None]:
        """(step, total steps, ETA seconds) from the rate of steps since this studio first saw the run."""
        run = self.store.get_run(run_id)
        if run is None:
            return 0, None, None
        step, total, eta = run.last_step or 0, run.total_steps, None
        follow = self._follows.get(run_id)
        if follow and follow.rate_origin and total and run.last_event_time:
            t0, s0 = follow.rate_origin
            if step > s0 and run.last_event_time > t0:
                eta = (total - step) * (run.last_event_time - t0) / (step - s0)
        return step, total, eta

    def shutdown(self) -> None:
        """Store what is pending and stop following. Never signals a run: training outlives the studio."""
        self._timer.stop()
        self.remote.shutdown()
        if self._thread.isRunning():
            self._stopRequested.emit()
            self._thread.quit()
            self._thread.wait()
        for run_id in list(self._follows):
            if self.store.get_run(run_id) is not None:
                self._ingest_now(run_id)  # offsets are in the DB, so nothing is stored twice
        self._follows.clear()
