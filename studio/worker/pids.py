"""Signalling a run's processes, only once their identity checks out (``core.process_identity``).

A pid whose identity is not verified is never signalled: it may belong to an unrelated program (and killpg to
its group).
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from core.process_identity import pid_alive, stat_fields


def child_processes(pid: int) -> list[tuple[int, int | None]]:
    """(pid, start ticks) of every live child of ``pid`` (field 4 of /proc/<child>/stat is its parent); empty
    without /proc. torchrun's ranks are its children, each in a session of its own."""
    try:
        names = [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:  # no /proc (macOS, Windows)
        return []
    children = []
    for name in names:
        fields = stat_fields(int(name))  # None when the process ended since the listing
        if fields and len(fields) > 19 and fields[1] == str(pid) and fields[0] != "Z":
            children.append((int(name), int(fields[19])))
    return children


def send_signal(pid: int, sig: int, group: bool = False, start_ticks: int | None = None,
                trusted: bool = False) -> bool:
    """Signal a run's process (or its whole process group); False when it is gone or not verifiably the run's
    (see ``pid_alive``): a reused pid must never receive our SIGTERM/SIGKILL."""
    if not pid_alive(pid, start_ticks, trusted):
        return False
    try:
        # A detached worker leads no group of its own but shares one only with its own children (not torchrun's
        # ranks: each has a session of its own, see RunManager.kill); never signal our own group.
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
