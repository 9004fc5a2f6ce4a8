"""Argument handling shared by `python -m core.train` and `minimind train <method>`."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from core.config.errors import TrainConfigError
from core.config.load import apply_overrides, load_train_config, validate_train_config
from core.config.train import TrainConfig
from core.train.run_folder import RunFolderError, check_new_run_dir

EXIT_CONFIG = 2


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="JSON training config (see docs/training.md)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=3e-4 (repeatable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest usable checkpoint")


def resolve_config(config: str | None, overrides: list[str], resume: str | None,
                   base: dict | None = None) -> TrainConfig:
    """The run's config: the resumed run's saved config (plus overrides), or base + file + overrides."""
    if resume:
        saved = Path(resume) / "config.json"
        if not saved.is_file() and not config:
            raise TrainConfigError(f"--resume {resume}: no config.json in that folder; is it a run directory?")
        source = saved if saved.is_file() else Path(config)
        data = json.loads(source.read_text(encoding="utf-8"))
        data["run_dir"] = str(resume)
        return validate_train_config(apply_overrides(data, overrides), str(source))
    return load_train_config(config, overrides, base=base)


def _refuse(message: str) -> int:
    """A run that cannot start: the message on stderr, and as events on rank 0's stdout (the studio reads them)."""
    from core.train.events import EventLog, log

    log(f"error: {message}")
    if int(os.environ.get("RANK", 0)) == 0:
        events = EventLog(None)
        events.emit("error", 0, message=message)
        events.emit("run_finished", 0, status="failed", message=message)
    return EXIT_CONFIG


def run_with(cfg_args: argparse.Namespace, base: dict | None = None) -> int:
    from core.train import distributed
    from core.train.engine import run_training

    try:
        cfg = resolve_config(cfg_args.config, cfg_args.overrides, cfg_args.resume, base)
        if not cfg_args.resume and cfg.run_dir:
            check_new_run_dir(cfg.run_dir, cfg_args.config)
    except (TrainConfigError, RunFolderError, OSError, json.JSONDecodeError) as exc:
        return _refuse(str(exc))
    problem = distributed.rank_gpu_problem(cfg.device)
    if problem:
        return _refuse(problem)
    return run_training(cfg, resume=bool(cfg_args.resume))


def dry_run(cfg_args: argparse.Namespace, as_json: bool = False, timed: bool = False) -> int:
    """Print the run plan (core/train/plan.py) of the config the run would use, and train nothing. Exit 0, 2 for a
    config that does not validate, 1 when the data or a checkpoint cannot be read (the message says which)."""
    from core.data import DataError
    from core.model.io import CheckpointError
    from core.train.events import log
    from core.train.plan import plan_from_setup

    try:
        cfg = resolve_config(cfg_args.config, cfg_args.overrides, cfg_args.resume)
    except (TrainConfigError, OSError, json.JSONDecodeError) as exc:
        log(f"error: {exc}")
        return EXIT_CONFIG
    try:
        plan = plan_from_setup(cfg, log=log, timed=timed)
    except (ValueError, OSError, DataError, CheckpointError) as exc:
        log(f"error: {exc}")
        return 1
    print(json.dumps(plan.to_json()) if as_json else plan.table(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.train", description="MiniMind training worker")
    add_common_arguments(parser)
    parser.add_argument("--calibrate", metavar="JSON", help=argparse.SUPPRESS)  # pre-flight's child (calibration.py)
    args = parser.parse_args(argv)
    if args.calibrate:
        from core.train.calibration import calibrate_main

        return calibrate_main(args.calibrate)
    if not args.config and not args.resume:
        parser.error("give --config FILE (or --resume RUN_DIR)")
    return run_with(args)
