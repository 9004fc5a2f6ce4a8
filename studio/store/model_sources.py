"""Where models are: checkpoints of runs (the store's rows, then the workspace's runs/ folder through core's
checkpoint reader, `core.train.checkpoint.model_checkpoints`) and exported GGUF files.

Shared by the Config (starting checkpoint), Chat (model picker), Export (what to export) and Evaluate panes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.train.checkpoint import model_checkpoints


@dataclass(frozen=True)
class ModelSource:
    label: str
    path: str
    kind: str               # "checkpoint" | "gguf"
    run_id: str | None = None


def list_checkpoints(context) -> list[ModelSource]:
    """Newest first within each run; runs known to the store first, then folders found on disk. One store
    query and one folder scan: four panes call this on every run change, on the UI thread."""
    out: list[ModelSource] = []
    seen: set[str] = set()
    try:
        for run_id, name, method, path in context.store.checkpoint_rows():
            if path not in seen and os.path.isdir(path):
                seen.add(path)
                out.append(ModelSource(f"{name or run_id} · {os.path.basename(path)} ({method})", path,
                                       "checkpoint", run_id))
    except Exception:  # a store problem must not empty the lists: fall back to the folder scan
        pass
    for run_id, path in reversed(model_checkpoints(context.workspace.runs_dir)):
        if path not in seen:
            seen.add(path)
            out.append(ModelSource(f"{run_id} · {os.path.basename(path)}", path, "checkpoint", run_id))
    return out


def list_ggufs(context) -> list[ModelSource]:
    out: list[ModelSource] = []
    seen: set[str] = set()
    try:
        for ex in context.store.exports():
            if ex.format == "gguf" and Path(ex.path).is_file() and ex.path not in seen:
                seen.add(ex.path)
                out.append(ModelSource(f"{Path(ex.path).name} (GGUF)", ex.path, "gguf", ex.run_id))
    except Exception:
        pass
    exports_dir = context.workspace.exports_dir
    if exports_dir.is_dir():
        for f in sorted(exports_dir.rglob("*.gguf")):
            if str(f) not in seen:
                seen.add(str(f))
                out.append(ModelSource(f"{f.name} (GGUF)", str(f), "gguf"))
    return out
