"""Is a run's process still alive? Survives pid reuse by also comparing the process start time.

A pid alone is not proof: after a reboot or a long time the same number can belong to another program.
On Linux /proc/<pid>/stat field 22 (starttime, clock ticks since boot; proc(5)) identifies the process; we
store it at launch (or read it from run_started's ``pid_start_ticks``) and compare. When the ticks are unknown
(a run folder from an older trainer) the pid only counts as ours if /proc/<pid>/cmdline is a trainer's
(``core.train`` or the bundle's ``--worker``); without /proc and without ticks it counts as gone. A pid whose
identity is not verified is never signalled: it may belong to an unrelated program (and killpg to its group).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/<pid>/stat (state, ppid, ...), or None when unknown (no /proc, no such process).
    The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when unknown (no /proc, no such process)."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (TypeError, IndexError, ValueError):
        return None


def child_processes(pid: int) -> list[tuple[int, int | None]]:
    """(pid, start ticks) of every live child of ``pid`` (field 4 of /proc/<child>/stat is its parent); empty
    without /proc. torchrun's ranks are its children, each in a session of its own."""
    try:
        names = [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:  # no /proc (macOS, Windows)
        return []
    children = []
    for name in names:
        fields = _stat_fields(int(name))  # None when the process ended since the listing
        if fields and len(fields) > 19 and fields[1] == str(pid) and fields[0] != "Z":
            children.append((int(name), int(fields[19])))
    return children


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


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
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
    if _is_zombie(pid):
        return False
    if trusted:
        return True
    if start_ticks is not None:
        current = process_start_ticks(pid)
        return current is None or current == start_ticks  # None: no /proc to compare with (kill(0) said alive)
    return looks_like_trainer(pid)


def send_signal(pid: int, sig: int, group: bool = False, start_ticks: int | None = None,
                trusted: bool = False) -> bool:
    """Signal a run's process (or its whole process group); False when it is gone or not verifiably the run's
    (see ``pid_alive``): a reused pid must never receive our SIGTERM/SIGKILL."""
    if not pid_alive(pid, start_ticks, trusted):
        return False
    try:
        # A detached worker leads no group of its own but shares one only with its children (torchrun ranks);
        # never signal our own group.
        if group and hasattr(os, "killpg") and os.getpgid(pid) != os.getpgid(0):
            os.killpg(os.getpgid(pid), sig)
        else:
            os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_process_group(pid: int, start_ticks: int | None = None, trusted: bool = False) -> bool:
    """SIGKILL ``pid`` with its process group (its own children, unless it shares our group), or ``pid`` alone
    when the group cannot be signalled (no process groups on Windows); False when it is gone or not the run's."""
    return send_signal(pid, SIGKILL, group=True, start_ticks=start_ticks, trusted=trusted) \
        or send_signal(pid, SIGKILL, start_ticks=start_ticks, trusted=trusted)


SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)
SIGSTOP = getattr(signal, "SIGSTOP", None)  # POSIX only
