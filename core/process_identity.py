"""Which process is a pid? The identity of a process from /proc, shared by the trainer and the studio.

A pid alone is not proof: after a reboot or a long time the same number can belong to another program.
On Linux /proc/<pid>/stat field 22 (starttime, clock ticks since boot; proc(5)) identifies the process: the
trainer reports its own in run_started's ``pid_start_ticks``, the studio stores it at launch, and both are
compared before a pid is trusted. When the ticks are unknown (a run folder from an older trainer) the pid only
counts as the run's if /proc/<pid>/cmdline is a trainer's (``core.train`` or the bundle's ``--worker``); without
/proc and without ticks it counts as gone.

Used by the trainer (its own ticks), the studio's store (is a run folder's process still alive?) and its worker
(may this pid be signalled? ``studio.worker.pids``). No torch, no Qt.
"""
from __future__ import annotations

import os
from pathlib import Path


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
        or b"--worker" in args


def is_zombie(pid: int) -> bool:
    fields = stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def pid_alive(pid: int | None, start_ticks: int | None = None, trusted: bool = False) -> bool:
    """True when ``pid`` runs and is the run's process: same start ticks when known, else a trainer's command
    line. ``trusted``: this studio spawned the pid itself moments ago (identity known without /proc)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but belongs to someone else: ours only if its identity checks out below
    except OSError:
        return False
    if is_zombie(pid):
        return False
    if trusted:
        return True
    if start_ticks is not None:
        current = process_start_ticks(pid)
        return current is None or current == start_ticks  # None: no /proc to compare with (kill(0) said alive)
    return looks_like_trainer(pid)
