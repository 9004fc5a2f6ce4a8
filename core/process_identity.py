"""Which process is a pid? The identity of a process from /proc, shared by the trainer and the studio.

A pid alone is not proof: after a reboot or a long time the same number can belong to another program.
On Linux /proc/<pid>/stat field 22 (starttime, clock ticks since boot; proc(5)) identifies the process: the
trainer reports its own in run_started's ``pid_start_ticks``, the studio stores it at launch, and both are
compared before a pid is trusted. When the ticks are unknown (a run folder from an older trainer) the pid only
counts as the run's if /proc/<pid>/cmdline is a trainer's (``core.train`` or the bundle's ``--worker``). Without
/proc (macOS) nothing can be read, so only a process this studio spawned itself (``trusted``) counts: another
pid, even one whose run folder records its ticks, counts as gone and is never signalled.

Used by the trainer (its own ticks), the studio's store (is a run folder's process still alive?) and its worker
(may this pid be signalled? ``studio.worker.pids``). No torch, no Qt.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

WORKER_FLAG = "--worker"  # the packaged studio re-runs itself as the trainer with this flag (studio/app.py)


def trainer_command() -> list[str]:
    """The argv head that starts one trainer process: `python -m core.train`, or in the packaged studio the app
    itself with WORKER_FLAG (sys.executable is the app there, not a Python). Arguments follow (`--config FILE`)."""
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_FLAG]
    return [sys.executable, "-m", "core.train"]


def stat_fields(pid: int | str) -> list[str] | None:
    """Fields 3 onwards of /proc/<pid>/stat (state, ppid, ...), or None when unknown (no /proc, no such process).
    The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def process_start_ticks(pid: int | str = "self") -> int | None:
    """Start time of ``pid`` (this process by default) in clock ticks since boot, or None when unknown (no /proc,
    no such process)."""
    fields = stat_fields(pid)
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (TypeError, IndexError, ValueError):
        return None


def process_cmdline(pid: int) -> bytes | None:
    """The NUL-separated command line of ``pid``, or None when unknown (no /proc, no such process)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def looks_like_trainer(pid: int) -> bool:
    """True when /proc says ``pid`` runs the trainer (source or bundle); False when not or unknown."""
    cmdline = process_cmdline(pid)
    if not cmdline:
        return False
    args = cmdline.split(b"\0")
    return any(arg == b"core.train" or arg.endswith(b"core/train/__main__.py") for arg in args) \
        or WORKER_FLAG.encode() in args


def is_zombie(pid: int) -> bool:
    fields = stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def identity_problem(pid: int | None, start_ticks: int | None = None, trusted: bool = False) -> str | None:
    """Why ``pid`` may not be treated as the run's process (never signalled), or None when it is the run's: it
    runs and either ``trusted`` (this studio spawned it and holds its handle) or positively identified (the same
    start ticks when they are known, else a trainer's command line). A start time or command line that cannot be
    read (no /proc, as on macOS) identifies nothing: an imported run folder could otherwise name any process."""
    if not pid or pid <= 0:
        return "no process id is known"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"process {pid} has ended"
    except PermissionError:
        pass  # exists but belongs to someone else: ours only if its identity checks out below
    except OSError as exc:
        return f"process {pid} cannot be checked ({exc})"
    if is_zombie(pid):
        return f"process {pid} has ended"
    if trusted:
        return None
    if start_ticks is not None:
        current = process_start_ticks(pid)
        if current is None:
            return (f"process {pid} cannot be identified as the run's: its start time cannot be read on this "
                    "system, so it may be another program that got the same pid")
        return None if current == start_ticks else f"process {pid} is another program (the run's pid was reused)"
    if looks_like_trainer(pid):
        return None
    if process_cmdline(pid) is None:
        return (f"process {pid} cannot be identified as the run's: its command line cannot be read on this "
                "system, so it may be another program that got the same pid")
    return f"process {pid} is another program (it does not run the trainer)"


def pid_alive(pid: int | None, start_ticks: int | None = None, trusted: bool = False) -> bool:
    """True when ``pid`` runs and is the run's process (``identity_problem`` finds nothing)."""
    return identity_problem(pid, start_ticks, trusted) is None
