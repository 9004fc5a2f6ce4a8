"""Start a trainer worker with QProcess so that it outlives the studio.

`QProcess.startDetached` puts the worker in its own session (a studio crash, its terminal's Ctrl+C or a closed
window never reach it) and returns its pid. The static form cannot redirect output, so on POSIX the command is
wrapped as `env K=V ... /bin/sh -c 'exec "$0" "$@" >>stdout.log 2>>stderr.log' argv...`: both `env` and `sh`
exec into the trainer, so the pid Qt returns is the trainer's own. The studio then follows the run through its
`events.jsonl` (the trainer writes it whatever happens to stdout), the same way whether it started the run or
re-attached to it after a restart.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QProcess

_REDIRECT = 'exec "$0" "$@" </dev/null >>"$MINIMIND_STDOUT_LOG" 2>>"$MINIMIND_STDERR_LOG"'


class SpawnError(OSError):
    pass


def spawn_detached(argv: list[str], cwd: Path, env: dict[str, str], stdout_log: Path, stderr_log: Path) -> int:
    """Launch `argv` detached in `cwd` with `env`, appending its output to the two logs; returns its pid."""
    if sys.platform == "win32":  # no /bin/sh: a detached Popen in its own process group does the same job
        with open(stdout_log, "ab") as out, open(stderr_log, "ab") as err:
            popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                     creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)
        return popen.pid
    env = {**env, "MINIMIND_STDOUT_LOG": str(stdout_log), "MINIMIND_STDERR_LOG": str(stderr_log)}
    # The child inherits this process's environment; only what differs goes on the command line, so secrets
    # already in the environment (tokens, keys) never appear in /proc/<pid>/cmdline. Removed variables are unset.
    inherited = os.environ
    env_args = [f"--unset={k}" for k in inherited if k not in env]
    env_args += [f"{k}={v}" for k, v in env.items() if "=" not in k and inherited.get(k) != v]
    ok, pid = QProcess.startDetached("/usr/bin/env", [*env_args, "/bin/sh", "-c", _REDIRECT, *argv], str(cwd))
    if not ok or not pid:
        raise SpawnError(f"could not start {argv[0]}")
    return int(pid)
