"""Is a run's process still alive? Survives pid reuse by also comparing the process start time.

A pid alone is not proof: after a reboot or a long time the same number can belong to another program.
On Linux /proc/<pid>/stat field 22 (starttime, clock ticks since boot; proc(5)) identifies the process; we
store it at launch and compare. Elsewhere we fall back to ``os.kill(pid, 0)``.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None when unknown (no /proc, no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].startswith("Z")


def pid_alive(pid: int | None, start_ticks: int | None = None) -> bool:
    """True when ``pid`` runs and (if ``start_ticks`` is known) is the same process that was launched."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists but belongs to someone else: cannot be ours unless ticks match below
    except OSError:
        return False
    if _is_zombie(pid):
        return False
    if start_ticks is not None:
        current = process_start_ticks(pid)
        if current is not None and current != start_ticks:
            return False
    return True


def send_signal(pid: int, sig: int, group: bool = False) -> bool:
    """Signal a process (or its whole process group); False when it is already gone."""
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


SIGKILL = getattr(signal, "SIGKILL", signal.SIGTERM)
