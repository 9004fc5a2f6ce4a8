"""The one place that builds the trainer's command line and environment."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from core.process_identity import WORKER_FLAG, trainer_command

REPO_ROOT = Path(__file__).resolve().parents[2]
# the frozen app also re-runs itself, with WORKER_FLAG (core.process_identity), as the trainer
EVAL_WORKER_FLAG = "--eval-worker"  # ... and as the Evaluate pane's worker
CLI_FLAG = "--cli"  # ... and as the `minimind` command (Datasets › Token caches runs `data prepare`)


def eval_worker_command(spec_path: Path | str) -> list[str]:
    """argv of the Evaluate pane's worker: `python -m core.eval.worker SPEC` from source, the app
    itself with --eval-worker in a bundle (there is no .py file to run there)."""
    if is_frozen():
        return [sys.executable, EVAL_WORKER_FLAG, str(spec_path)]
    return [sys.executable, "-m", "core.eval.worker", str(spec_path)]


def cli_command(args: list[str]) -> list[str]:
    """argv of `minimind ARGS` in a child process: `python -m core` from source, the app with --cli in a bundle."""
    if is_frozen():
        return [sys.executable, CLI_FLAG, *args]
    return [sys.executable, "-m", "core", *args]


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def build_trainer_command(config_path: Path | str, resume: Path | str | None = None, n_gpus: int = 1) -> list[str]:
    """argv that trains with ``config_path`` (optionally resuming ``resume``, a run folder).

    From source: ``python -m core.train``; with more than one GPU the same module under torchrun
    (``python -m torch.distributed.run``, so no ``torchrun`` script is needed on PATH). In a PyInstaller bundle
    ``sys.executable`` is the studio itself, which becomes the trainer when given ``--worker``.
    """
    tail = ["--config", str(config_path)]
    if resume is not None:
        tail += ["--resume", str(resume)]
    return trainer_base_command(n_gpus) + tail


def trainer_base_command(n_gpus: int = 1) -> list[str]:
    """The trainer's argv without its arguments (``+ ["--help"]`` is the self-test's launchability check)."""
    if n_gpus <= 1:
        return trainer_command()
    if is_frozen():
        return [sys.executable, WORKER_FLAG, "--nproc-per-node", str(n_gpus)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}",
            "-m", "core.train"]


def trainer_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: unbuffered output and the repository importable from any working directory."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if not is_frozen():
        paths = [str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env
