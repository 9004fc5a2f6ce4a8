"""Talking to the schedulers through their own commands: submit, cancel, and ask how a job is doing.

Slurm: ``sbatch --parsable``, ``scancel``, ``squeue``/``sacct``/``scontrol``. SkyPilot: ``sky launch``,
``sky cancel``, ``sky queue``. A job's state is one of ``queued``, ``running``, ``ended`` or ``unknown``;
``unknown`` (the scheduler cannot be reached, a command timed out or is missing) never ends a run: the studio keeps
following events.jsonl, which stays the source of truth for how a run finished.

Which job a run folder belongs to is kept in the folder itself (``launch.json``), so a restarted studio, or one
rebuilding its database from run folders, finds the job again.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core.launch.safe_values import LaunchValueError, check_job_id

JOB_FILE = "launch.json"
TIMEOUT_S = 30.0
QUEUED, RUNNING, ENDED, UNKNOWN = "queued", "running", "ended", "unknown"

# Slurm's job states (squeue %T, sacct State, scontrol JobState) by what they mean for a run.
_SLURM = {QUEUED: {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                   "SUSPENDED", "STOPPED", "RESIZING"},
          RUNNING: {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT"}}
_SKY = {QUEUED: {"INIT", "PENDING", "SETTING_UP", "STARTING"}, RUNNING: {"RUNNING"}}


class SchedulerError(RuntimeError):
    """A scheduler command failed; the message quotes the command and what it said."""


@dataclass
class JobRecord:
    """launch.json: the target a run was launched on and its current job (None until submitted)."""
    target: str
    kind: str
    job_id: str | None = None
    launch_file: str = ""
    submitted_at: float | None = None


@dataclass(frozen=True)
class JobState:
    state: str         # queued | running | ended | unknown
    detail: str = ""   # the scheduler's own word (PENDING, CANCELLED, ...) or why it is unknown


def read_job(run_dir: Path | str) -> JobRecord | None:
    """The run's job record, or None for a run launched on this machine."""
    try:
        data = json.loads((Path(run_dir) / JOB_FILE).read_text(encoding="utf-8"))
        return JobRecord(**{k: data.get(k) for k in JobRecord.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError):
        return None


def write_job(run_dir: Path | str, job: JobRecord) -> None:
    path = Path(run_dir) / JOB_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(job), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _run(argv: list[str], timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise SchedulerError(f"{argv[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise SchedulerError(f"{' '.join(argv)} did not answer within {timeout:.0f} s") from exc


def _checked(argv: list[str]) -> str:
    proc = _run(argv)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        raise SchedulerError(f"{' '.join(argv)} failed (exit {proc.returncode}): {said[-1] if said else ''}")
    return proc.stdout


def _job_id(job_id) -> str:
    """A job id read from launch.json, checked before it becomes an argument (``-a`` would cancel every job)."""
    try:
        return check_job_id(job_id, JOB_FILE)
    except LaunchValueError as exc:
        raise SchedulerError(str(exc)) from None


# ------------------------------------------------------------------------------------------------ submitting
def submit(target, launch_file: Path) -> str:
    """Submit the launch file; the scheduler's job id."""
    if target.kind == "slurm":
        out = _checked(["sbatch", "--parsable", str(launch_file)]).strip()
        job_id = out.split(";")[0].strip()
        if not job_id.isdigit():
            raise SchedulerError(f"sbatch answered {out!r}, not a job id")
        return job_id
    if target.kind == "skypilot":
        out = _checked(["sky", "launch", "--yes", "--detach-run", "--cluster", target.cluster, str(launch_file)])
        found = re.findall(r"Job ID:\s*(\d+)", out) or re.findall(r"\bjob[ _]id\D{0,3}(\d+)", out, re.I)
        if not found:
            raise SchedulerError(f"sky launch gave no job id; its output ended with: {out.strip()[-200:]}")
        return found[-1]
    raise SchedulerError(f"target {target.name!r} runs on this machine; nothing to submit")


def cancel(target, job_id: str, kill: bool = False) -> None:
    """Stop a job. Slurm cancels a job one way whatever the signal asked for (``scancel --signal=KILL`` included):
    SIGTERM to every task, SIGKILL after KillWait, so Kill and Stop both give the trainer KillWait seconds to write
    a checkpoint. SkyPilot's cancel has one strength too. ``kill`` is kept for schedulers that tell them apart."""
    if target.kind == "slurm":
        _checked(["scancel", _job_id(job_id)])
    elif target.kind == "skypilot":
        _checked(["sky", "cancel", "--yes", target.cluster, _job_id(job_id)])


# ---------------------------------------------------------------------------------------------------- status
def job_state(target, job_id: str) -> JobState:
    try:
        if target.kind == "slurm":
            return _slurm_state(_job_id(job_id))
        if target.kind == "skypilot":
            return _sky_state(target, _job_id(job_id))
    except SchedulerError as exc:
        return JobState(UNKNOWN, str(exc))
    return JobState(UNKNOWN, f"{target.kind} has no scheduler")


def _meaning(word: str, table: dict) -> str:
    word = word.upper().rstrip("+")
    for meaning, words in table.items():
        if word in words:
            return meaning
    return ENDED


def _slurm_state(job_id: str) -> JobState:
    proc = _run(["squeue", "--noheader", "--states=all", "--jobs", job_id, "--format=%T"])
    word = proc.stdout.strip().splitlines()[0].strip() if proc.returncode == 0 and proc.stdout.strip() else ""
    if word:
        return JobState(_meaning(word, _SLURM), word)
    said = (proc.stderr or "").strip()
    if proc.returncode != 0 and "invalid job id" not in said.lower():
        return JobState(UNKNOWN, f"squeue: {said or f'exit {proc.returncode}'}")
    # Gone from the controller's memory (MinJobAge): accounting knows how it ended, if it is kept.
    acct = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--jobs", job_id, "--format=State"])
    words = acct.stdout.split() if acct.returncode == 0 else []
    return JobState(ENDED, words[0] if words else "no longer known to Slurm")


def _sky_state(target, job_id: str) -> JobState:
    proc = _run(["sky", "queue", target.cluster])
    if proc.returncode != 0:
        return JobState(UNKNOWN, f"sky queue: {(proc.stderr or proc.stdout).strip()[-200:]}")
    for line in proc.stdout.splitlines():
        cells = line.split()
        if cells and cells[0] == job_id:
            word = next((c for c in reversed(cells) if c.isupper() and c.replace("_", "").isalpha()), "")
            return JobState(_meaning(word, _SKY), word)
    return JobState(ENDED, f"job {job_id} is not in sky queue {target.cluster}")


def record_submission(run_dir: Path, target, launch_file: Path, job_id: str) -> JobRecord:
    job = JobRecord(target.name, target.kind, job_id, launch_file.name, time.time())
    write_job(run_dir, job)
    return job
