"""`minimind sweep SPEC --out DIR`: a hyperparameter sweep whose trials are ordinary runs (docs/sweeps.md)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="a hyperparameter sweep over config fields (grid, random, Optuna TPE with pruning)",
        description="Run a sweep: each trial is an ordinary training run (its own run folder) with lineage to the "
                    "sweep. The Optuna study is kept in DIR/study.db: run the same command again to resume a "
                    "stopped or killed sweep. Spec format: docs/sweeps.md.")
    p.add_argument("spec", metavar="SPEC", help="sweep spec, YAML or JSON")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep folder (study, spec, sweep.json)")
    p.add_argument("--runs-dir", metavar="DIR", help="where the trials' run folders go (default DIR/runs)")
    p.add_argument("--parallel", type=int, metavar="N", help="trials at once (default: the spec's parallel)")
    p.add_argument("--n-trials", type=int, metavar="N", help="trials in all (default: the spec's n_trials)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from core.cli import CLIError
    from core.sweep.runner import SweepError, run_sweep
    from core.sweep.spec import SweepSpecError
    from core.sweep.study import format_summary, sweep_summary

    for flag, value in (("--parallel", args.parallel), ("--n-trials", args.n_trials)):
        if value is not None and value < 1:
            raise CLIError(f"{flag} must be at least 1 (got {value})")
    try:
        result = run_sweep(Path(args.spec), Path(args.out), Path(args.runs_dir) if args.runs_dir else None,
                           parallel=args.parallel, n_trials=args.n_trials)
    except (SweepSpecError, SweepError) as exc:
        raise CLIError(str(exc)) from None
    print(f"sweep {result.sweep_id}: trials finished by this process: "
          f"{', '.join(map(str, result.finished)) or 'none'}")
    print(format_summary(sweep_summary(Path(args.out))))
    if result.stopped:
        print(f"stopped; resume with: minimind sweep {args.spec} --out {args.out}", file=sys.stderr)
    return 0
