"""Launching and following training runs. Attributes are imported lazily: ``studio.store`` imports the Qt-free
helpers here (pids, tailer), and the run manager imports the store."""
from __future__ import annotations

__all__ = ["RunManager", "build_trainer_command"]


def __getattr__(name: str):
    if name == "RunManager":
        from studio.worker.run_manager import RunManager

        return RunManager
    if name == "build_trainer_command":
        from studio.worker.command import build_trainer_command

        return build_trainer_command
    raise AttributeError(name)
