"""Launching, following and signalling training runs (QProcess, the ingest thread). Above ``studio.store``: the
worker imports the store, never the other way round. Attributes are imported lazily (Qt and the store load on
first use)."""
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
