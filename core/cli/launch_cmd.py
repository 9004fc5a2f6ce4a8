"""`minimind launch-file` (print a target's launch file) and the cluster half of `minimind train … --target`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.cli import CLIError


def add_target_arguments(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--target", metavar="NAME", required=required, default=None if required else "local",
                   help="launch target from the workspace's targets.json: local (default), or a Slurm or "
                        "SkyPilot target (see docs/cluster.md)")
    p.add_argument("--targets", metavar="FILE",
                   help="targets file (default: $MINIMIND_WORKSPACE/targets.json, else ~/MiniMindStudio/targets.json)")


def register(subparsers) -> None:
    from core.train.cli import add_common_arguments

    p = subparsers.add_parser("launch-file", help="print a cluster target's launch file (sbatch script or "
                                                  "SkyPilot YAML) without submitting it",
                              description="Print the sbatch script or SkyPilot task YAML that `minimind train "
                                          "--target NAME` would write into the run folder and submit.")
    add_target_arguments(p, required=True)
    add_common_arguments(p)
    p.set_defaults(func=print_launch_file)


def load_target(args: argparse.Namespace):
    from core.launch.targets import TargetError, find_target, load_targets, targets_path

    path = Path(args.targets) if args.targets else targets_path()
    try:
        return find_target(load_targets(path), args.target)
    except TargetError as exc:
        raise CLIError(str(exc)) from None


def _run_dir(args: argparse.Namespace, target) -> Path:
    """The run folder: --resume's, the config's run_dir, or a new one under the target's (or workspace's) runs/."""
    from core.config.errors import TrainConfigError
    from core.launch.targets import workspace_root
    from core.train.cli import resolve_config

    try:
        cfg = resolve_config(args.config, args.overrides, args.resume)
    except (TrainConfigError, OSError, json.JSONDecodeError) as exc:
        raise CLIError(str(exc)) from None
    if cfg.run_dir:
        return Path(cfg.run_dir).absolute()
    runs = Path(target.runs_dir) if target.runs_dir else workspace_root() / "runs"
    return runs.absolute() / f"{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"


def print_launch_file(args: argparse.Namespace) -> int:
    from core.launch.launch_file import render_launch_file
    from core.launch.safe_values import LaunchValueError

    if not args.config and not args.resume:
        raise CLIError("give --config FILE (or --resume RUN_DIR)")
    target = load_target(args)
    if target.kind == "local":
        raise CLIError(f"target {target.name!r} runs on this machine and has no launch file; "
                       "name a Slurm or SkyPilot target")
    try:
        text = render_launch_file(target, _run_dir(args, target), resume=bool(args.resume))
    except LaunchValueError as exc:
        raise CLIError(str(exc)) from None
    sys.stdout.write(text)
    return 0


def submit_training(args: argparse.Namespace, target) -> int:
    """`minimind train … --target NAME` for a cluster target: write the run folder, submit, print the job."""
    from core.config.errors import TrainConfigError
    from core.launch.cluster_run import prepare_run, submit_run
    from core.launch.launch_file import check_launch_run_dir
    from core.launch.safe_values import LaunchValueError
    from core.launch.scheduler import SchedulerError
    from core.train.cli import resolve_config
    from core.train.run_folder import RunFolderError, check_new_run_dir

    run_dir = _run_dir(args, target)
    resume = bool(args.resume)
    try:
        check_launch_run_dir(target, run_dir)  # before anything is written
        if not resume:
            try:
                cfg = resolve_config(args.config, args.overrides, None)
                check_new_run_dir(run_dir, args.config)
            except (TrainConfigError, RunFolderError, OSError) as exc:
                raise CLIError(str(exc)) from None
            run_dir.mkdir(parents=True, exist_ok=True)
            prepare_run(target, run_dir, cfg.model_dump(mode="json", exclude_none=True))
        job = submit_run(target, run_dir, resume=resume)
    except (SchedulerError, LaunchValueError) as exc:
        raise CLIError(str(exc)) from None
    print(f"submitted {job.launch_file} to {target.kind} target {target.name!r} as job {job.job_id}\n"
          f"run folder: {run_dir}  (follow it in the studio: File > Import run folder)")
    return 0
