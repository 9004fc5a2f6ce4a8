"""Where models are: checkpoints of runs (store + workspace runs/ folder) and exported GGUF files.

Shared by the Config (starting checkpoint), Chat (model picker) and Export (what to export) panes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSource:
    label: str
    path: str
    kind: str               # "checkpoint" | "gguf"
    run_id: str | None = None


def _scan_checkpoints(runs_dir: Path) -> list[tuple[str, Path]]:
    found = []
    if runs_dir.is_dir():
        for ck in sorted(runs_dir.glob("*/checkpoints/step-*")):
            if (ck / "model_config.json").is_file():
                found.append((ck.parent.parent.name, ck))
    return found


def list_checkpoints(context) -> list[ModelSource]:
    """Newest first within each run; runs known to the store first, then folders found on disk."""
    out: list[ModelSource] = []
    seen: set[str] = set()
    store = context.store
    try:
        for run in store.list_runs():
            for ck in sorted(store.checkpoints(run.id), key=lambda c: -c.step):
                if Path(ck.path).is_dir() and ck.path not in seen:
                    seen.add(ck.path)
                    name = run.name or run.id
                    out.append(ModelSource(f"{name} · {Path(ck.path).name} ({run.method})", ck.path,
                                           "checkpoint", run.id))
    except Exception:  # a store problem must not empty the lists: fall back to the folder scan
        pass
    for run_id, ck in reversed(_scan_checkpoints(context.workspace.runs_dir)):
        if str(ck) not in seen:
            seen.add(str(ck))
            out.append(ModelSource(f"{run_id} · {ck.name}", str(ck), "checkpoint", run_id))
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
