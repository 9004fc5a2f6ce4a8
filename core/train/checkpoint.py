"""Crash-safe checkpoints: write to a temp dir, fsync, rename; then repoint `checkpoints/latest`.

Layout (docs/architecture.md "Checkpoints"): `run_dir/checkpoints/step-NNNNNN/` holds the model files (written
by the recipe through core.model.io or core.model.lora), `optimizer.pt` (optimizer, scaler, schedule, per-rank
RNG states, recipe extras) and `state.json` (step, data position, whether the step's evaluation is still to do,
and a manifest of every file with its size and sha256). `state.json` is written last, so a directory without a
valid one is incomplete.

Why this order survives a kill at any instant: until `os.rename(tmp, step-N)` nothing the reader looks at has
changed; the rename is atomic on POSIX; `latest` is replaced atomically via temp file + `os.replace`. A reader
that finds `latest` pointing at a broken directory (disk full, truncated copy) verifies the manifest, says what
is wrong, and falls back to the newest older checkpoint that verifies.

The engine's side, at the end of this file: `save_training_checkpoint` (what a training checkpoint holds, from the
engine's state passed in explicitly) and `resume_training` (the same read back into a recipe, optimizer and
GradScaler).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.atomic_file import fsync_path, replace_file
from core.checksum import sha256_file

CKPT_DIR = "checkpoints"
LATEST = "latest"
STATE_FILE = "state.json"
TRAINER_FILE = "optimizer.pt"
_STEP_RE = re.compile(r"^step-(\d+)$")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says which file and what is wrong."""


def step_dir_name(step: int) -> str:
    return f"step-{step:06d}"


def _manifest(root: Path) -> dict[str, dict]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != STATE_FILE:
            files[p.relative_to(root).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return files


def save_checkpoint(run_dir: str | Path, step: int, write_files: Callable[[Path], None], state: dict,
                    keep_last: int | None = None) -> Path:
    """Write a complete checkpoint for `step` atomically and return its directory.

    `write_files(tmp_dir)` writes the model and trainer files; `state` (JSON-able) goes into state.json with the
    manifest. Older checkpoints beyond `keep_last` are removed after `latest` points at the new one.
    """
    ckpts = Path(run_dir) / CKPT_DIR
    ckpts.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    tmp = ckpts / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write_files(tmp)
        body = dict(state, step=step, files=_manifest(tmp))
        (tmp / STATE_FILE).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        for p in tmp.rglob("*"):
            fsync_path(p)
        fsync_path(tmp)
    except Exception as exc:  # disk full, quota, I/O error: drop the half-written copy, keep `latest` as it was
        shutil.rmtree(tmp, ignore_errors=True)
        latest = ckpts / LATEST
        kept = latest.read_text(encoding="utf-8").strip() if latest.is_file() else None
        safe = f"{kept} is intact and still the one to resume from" if kept else "no earlier checkpoint exists"
        raise CheckpointError(f"{ckpts / name}: could not be written ({type(exc).__name__}: {exc}); {safe}. "
                              "Free disk space (or raise the quota) and resume the run") from exc
    final = ckpts / name
    if final.exists():  # the same step saved again (e.g. stop right after a periodic save): swap it out
        trash = ckpts / f".old-{name}-{os.getpid()}"
        os.rename(final, trash)
        os.rename(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.rename(tmp, final)
    fsync_path(ckpts)
    replace_file(ckpts / LATEST, name + "\n", durable=True)
    if keep_last:
        prune_checkpoints(run_dir, keep_last, protect=name)
    return final


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Step directories of a run, oldest first (complete or not)."""
    ckpts = Path(run_dir) / CKPT_DIR
    if not ckpts.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpts.iterdir() if p.is_dir() and (m := _STEP_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def model_checkpoints(runs_dir: str | Path) -> list[tuple[str, str]]:
    """(run folder name, checkpoint path) of every `*/checkpoints/step-*` under `runs_dir` that holds a model
    (its model_config.json), sorted by path: what a model picker offers. os.scandir and strings, not pathlib: the
    studio calls this on its UI thread at every run change."""
    found = []
    try:
        runs = sorted(entry.name for entry in os.scandir(runs_dir) if entry.is_dir())
    except OSError:
        return found
    for run in runs:
        ckpts = os.path.join(runs_dir, run, CKPT_DIR)
        try:
            names = sorted(e.name for e in os.scandir(ckpts) if _STEP_RE.match(e.name) and e.is_dir())
        except OSError:
            continue
        found += [(run, path) for path in (os.path.join(ckpts, name) for name in names)
                  if os.path.isfile(os.path.join(path, "model_config.json"))]
    return found


def prune_checkpoints(run_dir: str | Path, keep_last: int, protect: str | None = None) -> None:
    """Delete all but the newest `keep_last` step directories, and stale temp dirs left by a killed save."""
    ckpts = Path(run_dir) / CKPT_DIR
    for stale in ckpts.glob(".tmp-step-*"):  # only rank 0 saves, one at a time: any temp dir is dead
        shutil.rmtree(stale, ignore_errors=True)
    for old in ckpts.glob(".old-step-*"):
        shutil.rmtree(old, ignore_errors=True)
    steps = list_checkpoints(run_dir)
    for p in steps[:-keep_last] if keep_last > 0 else []:
        if p.name != protect:
            shutil.rmtree(p, ignore_errors=True)


def verify_checkpoint(ckpt: str | Path, hashes: bool = True) -> dict:
    """Check state.json and every file it lists (presence, size, sha256). Returns the state; raises CheckpointError."""
    ckpt = Path(ckpt)
    state_path = ckpt / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"{ckpt}: no {STATE_FILE}; the checkpoint was not completely written")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{state_path}: unreadable ({exc}); the checkpoint is corrupt") from None
    for rel, info in state.get("files", {}).items():
        p = ckpt / rel
        if not p.is_file():
            raise CheckpointError(f"{p}: missing; the checkpoint is incomplete")
        size = p.stat().st_size
        if size != info["size"]:
            raise CheckpointError(f"{p}: {size} bytes, expected {info['size']}; the file is truncated or corrupt")
        if hashes and sha256_file(p) != info["sha256"]:
            raise CheckpointError(f"{p}: sha256 does not match state.json; the file is corrupt")
    return state


def resume_candidates(run_dir: str | Path) -> list[Path]:
    """Checkpoints to try when resuming: the one `latest` names first, then the others newest first."""
    run_dir = Path(run_dir)
    ordered = list(reversed(list_checkpoints(run_dir)))
    latest = run_dir / CKPT_DIR / LATEST
    if latest.is_file():
        named = run_dir / CKPT_DIR / latest.read_text(encoding="utf-8").strip()
        if named in ordered:
            ordered.remove(named)
            ordered.insert(0, named)
    return ordered


def find_resumable(run_dir: str | Path, warn: Callable[[str], None]) -> tuple[Path, dict] | None:
    """The newest checkpoint that verifies, warning about each broken one skipped; None when the run has none."""
    for ckpt in resume_candidates(run_dir):
        try:
            return ckpt, verify_checkpoint(ckpt)
        except CheckpointError as exc:
            warn(f"{exc}; falling back to an older checkpoint")
    return None


# ---- the engine's side: one training checkpoint saved, and a run resumed from one -------------------------------
# torch is imported inside these two functions: the studio lists checkpoints with this module and stays torch-free.

@dataclass
class Resumed:
    """Where a resumed run goes on from: its checkpoint, its data position and this rank's RNG streams."""
    checkpoint: Path
    step: int
    epoch: int
    batch_in_epoch: int
    rng: dict
    eval_pending: bool = False  # the step's evaluation was stopped (or never began): the resume runs it first


def save_training_checkpoint(run_dir: Path, recipe, optimizer, scaler, *, method: str, schedule: str, step: int,
                             epoch: int, batch_in_epoch: int, total_steps: int, precision: str,
                             keep_last: int | None, eval_pending: bool = False) -> Path | None:
    """Every rank's RNG streams and recipe state gathered, then rank 0 writes the checkpoint of `step`: the
    recipe's model files, `optimizer.pt` (optimizer, GradScaler, schedule, RNG, recipe state) and `state.json`
    (`eval_pending`: the evaluation due at `step` did not complete, a stop cut it short).
    A collective: every rank calls it. Returns the checkpoint's directory on rank 0, None on the others."""
    from core.train import distributed as dist
    from core.train.trainer_state import check_plain, rng_state

    rank, world_size, device = recipe.ctx.rank, recipe.ctx.world_size, recipe.ctx.device
    rngs = dist.gather_objects(rng_state(device))
    # every rank's own recipe state: on-policy ranks each hold the cached rollouts of their own prompts
    extras = dist.gather_objects(recipe.extra_state())
    path = None
    if rank == 0:
        for r, e in enumerate(extras):
            check_plain(e, f"{method} recipe's extra_state (rank {r})")

        def write(tmp: Path) -> None:
            import torch

            recipe.save_weights(tmp)
            torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                        "schedule": {"name": schedule, "step": step, "total_steps": total_steps},
                        "rng": rngs, "recipe": extras[0], "recipe_ranks": extras, "precision": precision},
                       tmp / TRAINER_FILE)

        state = {"format": 1, "method": method, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                 "total_steps": total_steps, "world_size": world_size, "eval_pending": eval_pending,
                 "time": time.time()}
        path = save_checkpoint(run_dir, step, write, state, keep_last=keep_last)
    dist.barrier()
    return path


def resume_training(run_dir: Path, recipe, optimizer, scaler, *, precision: str,
                    warn: Callable[[str], None]) -> Resumed | None:
    """Load the newest usable checkpoint of `run_dir` into the recipe (weights, extra state), the optimizer and
    the GradScaler; broken ones are skipped with a warning. None when the run has no checkpoint yet (warned: it
    starts from step 0); CheckpointError when none is usable. The optimizer keeps this run's hyperparameters
    (`--resume --set optim.lr=...` wins) and the saved moments."""
    from core.train.events import log
    from core.train.trainer_state import load_trainer_state, rng_state

    rank, world_size = recipe.ctx.rank, recipe.ctx.world_size
    candidates = resume_candidates(run_dir)
    if not candidates:
        warn(f"{run_dir}: no checkpoint yet; starting the run from step 0")
        return None
    for ckpt in candidates:
        try:
            state = verify_checkpoint(ckpt)
            trainer_state = load_trainer_state(ckpt / TRAINER_FILE)
            recipe.load_weights(ckpt)
        except Exception as exc:  # verify, unpickling and safetensors header errors alike
            warn(f"{ckpt.name}: cannot resume from it ({exc}); trying an older checkpoint")
            continue
        # load_state_dict restores the saved lr/base_lr/betas/weight_decay; this run's fresh ones go back on top
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(trainer_state["optimizer"])
        for g, f in zip(optimizer.param_groups, fresh):
            g.update(f)
        _load_scaler(scaler, trainer_state.get("scaler") or {}, warn)
        saved_precision = trainer_state.get("precision")
        if saved_precision and saved_precision != precision:
            warn(f"precision: the run was trained in {saved_precision} and continues in {precision}; the weights "
                 "and optimizer moments carry over unchanged (fp32)")
        ranks = trainer_state.get("recipe_ranks")  # per rank since 2026-12; before, rank 0's only
        same_world = isinstance(ranks, list) and len(ranks) == world_size
        recipe.load_extra_state(ranks[rank] if same_world else trainer_state.get("recipe", {}))
        rngs = trainer_state.get("rng", [])
        if len(rngs) != world_size:
            warn(f"resuming with {world_size} processes, saved with {len(rngs)}: data order is kept, dropout RNG "
                 "streams restart")
        rng = rngs[rank] if rank < len(rngs) else rng_state(recipe.ctx.device)
        resumed = Resumed(ckpt, state["step"], state["epoch"], state["batch_in_epoch"], rng,
                          eval_pending=bool(state.get("eval_pending")))
        log(f"resuming {run_dir} from {ckpt.name} (epoch {resumed.epoch}, batch {resumed.batch_in_epoch})")
        return resumed
    raise CheckpointError(f"{run_dir}: no usable checkpoint (all {len(candidates)} are incomplete or corrupt, see "
                          "the warnings above); start a new run")


def clear_eval_pending(ckpt: Path) -> None:
    """Note in `ckpt`'s state.json that its step's evaluation is done (a resume ran it): resuming from it again
    must not evaluate that step twice. Only the flag changes; the manifest stays valid."""
    state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    if state.get("eval_pending"):
        replace_file(ckpt / STATE_FILE, json.dumps(dict(state, eval_pending=False), indent=2) + "\n", durable=True)


def _load_scaler(scaler, saved: dict, warn: Callable[[str], None]) -> None:
    """The GradScaler's state, across a precision change: fp16 after fp32/bf16 starts a fresh scale (there is none
    saved), and fp32/bf16 after fp16 drops the saved one (nothing scales any more)."""
    if scaler.is_enabled() and saved:
        scaler.load_state_dict(saved)
    elif scaler.is_enabled():
        warn("precision: resumed as fp16 from a run without loss scaling; the GradScaler starts afresh")
