"""The workspace folder: studio.db, runs/, datasets/, tokenizers/, exports/, sweeps/, cache/ (token caches).

Resolution order: the ``MINIMIND_WORKSPACE`` environment variable (tests use it), then the folder remembered in
QSettings, then ``~/MiniMindStudio``. A first start opens on that default with no dialog; the window offers
another folder in a banner (``MainWindow.offer_workspace_choice``, called by ``studio.app.main``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.launch.targets import DEFAULT_WORKSPACE, TARGETS_FILE, workspace_cache_dir
from core.launch.targets import WORKSPACE_ENV as ENV_VAR

SETTINGS_KEY = "workspace"
SUBDIRS = ("runs", "datasets", "tokenizers", "exports")


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "studio.db"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def tokenizers_dir(self) -> Path:
        return self.root / "tokenizers"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def sweeps_dir(self) -> Path:
        """Sweeps started from the studio (Config › Sweep…); their trials' run folders go to runs/."""
        return self.root / "sweeps"

    @property
    def cache_dir(self) -> Path:
        """Token caches shared by every run of the workspace (Datasets › Token caches prepares them ahead)."""
        return workspace_cache_dir(self.root)

    @property
    def targets_path(self) -> Path:
        """Launch targets (local, Slurm, SkyPilot): see core.launch.targets and docs/cluster.md."""
        return self.root / TARGETS_FILE

    def ensure(self) -> "Workspace":
        """Create the folder layout (idempotent) and return self."""
        for name in SUBDIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        return self


def _settings():
    from PySide6.QtCore import QSettings

    return QSettings("MiniMind", "MiniMind Studio")


def remembered_workspace() -> Path | None:
    """The workspace chosen earlier (QSettings), or None on a first run."""
    value = _settings().value(SETTINGS_KEY)
    return Path(str(value)) if value else None


def remember_workspace(root: Path) -> None:
    _settings().setValue(SETTINGS_KEY, str(root))


def resolve_workspace() -> tuple[Path, bool]:
    """(folder, chosen): ``chosen`` is False when nothing picked one yet (first start: the banner offers
    another folder)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), True
    remembered = remembered_workspace()
    if remembered is not None:
        return remembered, True
    return DEFAULT_WORKSPACE, False
