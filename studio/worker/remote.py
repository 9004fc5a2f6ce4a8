"""The studio's side of runs on cluster targets: submit, cancel, and the scheduler's view of each job.

The scheduler is asked off the UI thread (one worker thread; ``squeue`` on a slow login node or ``sky queue``
may take seconds) and at most every ``interval_s`` per run; the UI reads the latest answer. An ``unknown`` answer
(the scheduler cannot be reached) never ends a run: the run is followed through events.jsonl meanwhile.
"""
from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from core.launch.cluster_run import prepare_run, submit_run
from core.launch.scheduler import ENDED, QUEUED, UNKNOWN, JobRecord, JobState, cancel, job_state, read_job
from core.launch.targets import find_target, load_default_target, load_targets

KIND_NAMES = {"slurm": "Slurm", "skypilot": "SkyPilot"}


class RemoteJobs:
    def __init__(self, targets_path: Path, interval_s: float = 2.0) -> None:
        self.targets_path = Path(targets_path)
        self.interval_s = interval_s
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="scheduler-status")
        self._asking: dict[str, Future] = {}
        self._asked_at: dict[str, float] = {}
        self._known: dict[str, JobState] = {}

    # ---- targets
    def target(self, name: str | None):
        """The named target, or the workspace's default one (raises TargetError for an unknown name)."""
        return find_target(load_targets(self.targets_path), name or load_default_target(self.targets_path))

    @staticmethod
    def job(run_dir: Path | str) -> JobRecord | None:
        return read_job(run_dir)

    def prepare(self, target, run_dir: Path, config: dict) -> dict:
        return prepare_run(target, run_dir, config)

    def submit(self, run_id: str, run_dir: Path, job: JobRecord, resume: bool) -> JobRecord:
        self.forget(run_id)  # a resubmission is a new job
        return submit_run(self.target(job.target), run_dir, resume=resume)

    def cancel(self, job: JobRecord, kill: bool) -> None:
        cancel(self.target(job.target), job.job_id, kill=kill)

    # ---- status
    def state(self, run_id: str, job: JobRecord) -> JobState | None:
        """The latest answer about ``job`` (None before the first); asks again in the background when due."""
        asking = self._asking.get(run_id)
        if asking is not None and asking.done():
            del self._asking[run_id]
            try:
                self._known[run_id] = asking.result()
            except Exception as exc:  # noqa: BLE001 - a failed question is an unknown answer, never an ending
                self._known[run_id] = JobState(UNKNOWN, f"{type(exc).__name__}: {exc}")
        now = time.monotonic()
        if run_id not in self._asking and now - self._asked_at.get(run_id, -1e9) >= self.interval_s:
            self._asked_at[run_id] = now
            self._asking[run_id] = self._pool.submit(self._ask, job)
        return self._known.get(run_id)

    def _ask(self, job: JobRecord) -> JobState:
        return job_state(self.target(job.target), job.job_id)

    def forget(self, run_id: str) -> None:
        for table in (self._asking, self._asked_at, self._known):
            table.pop(run_id, None)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def describe(job: JobRecord, state: JobState) -> str:
    """The run's status line while the scheduler holds it ('' when the event stream says enough)."""
    kind = KIND_NAMES.get(job.kind, job.kind)
    if state.state == QUEUED:
        return f"{kind} job {job.job_id}: {state.detail} (waiting for nodes)"
    if state.state == UNKNOWN:
        return f"cannot reach {kind} ({state.detail}); still following events.jsonl"
    if state.state == ENDED:
        return f"{kind} job {job.job_id} ended ({state.detail})"
    return ""
