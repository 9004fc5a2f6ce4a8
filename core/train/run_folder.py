"""What marks a run folder, and whether a new training may write into a folder.

A training writes config.json, events.jsonl and checkpoints/ into its ``run_dir``. A config's ``run_dir`` may
name any folder (a downloaded config, a typo): written into, a folder that is not a run's would lose its own
config.json. So a new run goes only into a folder that is missing, empty, already a run folder, or holds nothing
but what its launcher wrote: the config file this run was started with (the studio and ``minimind train
--target`` write ``run_dir/config.json`` first, then train with ``--config`` of it) and ``*.log`` files (the
trainer's output sent there: the studio's stdout.log and stderr.log, a shell's or torchrun agents' redirect).
The trainer writes neither of those names. A resume goes into a run folder as before.
"""
from __future__ import annotations

from pathlib import Path

from core.launch.scheduler import JOB_FILE
from core.train.checkpoint import CKPT_DIR

EVENTS_FILE = "events.jsonl"  # written by core.train.events.EventLog
RUN_MARKERS = (EVENTS_FILE, CKPT_DIR, JOB_FILE)  # any one: the trainer (or a cluster launch) wrote here
LOG_SUFFIX = ".log"  # the trainer's output as a launcher redirected it (studio/worker/spawn.py: stdout.log, ...)


class RunFolderError(ValueError):
    """A run_dir a new training must not write into; the message says which folder, why, and what to do."""


def is_run_folder(folder: Path | str) -> bool:
    return any((Path(folder) / marker).exists() for marker in RUN_MARKERS)


def check_new_run_dir(run_dir: Path | str, config_file: Path | str | None = None) -> None:
    """RunFolderError unless a new training may write into ``run_dir`` (see the module's docstring)."""
    folder = Path(run_dir)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise RunFolderError(f"run_dir: {folder} is a file, not a folder; choose a new folder for the run")
    if is_run_folder(folder):
        return
    own = Path(config_file).resolve() if config_file else None
    others = sorted(p.name for p in folder.iterdir()
                    if not (p.is_file() and p.suffix == LOG_SUFFIX) and (own is None or p.resolve() != own))
    if others:
        shown = ", ".join(others[:5]) + (", …" if len(others) > 5 else "")
        raise RunFolderError(
            f"run_dir: {folder} is not empty ({shown}) and is not a run folder (it has no "
            f"{', '.join(RUN_MARKERS)}); a new run would write its config.json, events and checkpoints among "
            "those files. Choose a new or empty folder, or resume a run folder with --resume")
