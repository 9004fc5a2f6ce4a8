"""`minimind train <method>`: run the trainer in this process (the studio launches `python -m core.train`)."""
from __future__ import annotations

import argparse
import json

from core.methods import all_methods, method_names

# plain flag -> (config key, type); each becomes a `--set key=value` applied after the config file
FLAGS = {
    "--tokenizer": ("data.tokenizer", str, "DIR", "tokenizer folder (tokenizer.json)"),
    "--preset": ("model", str, "NAME", "model preset: tiny, small, moe, base"),
    "--init": ("init", str, "CHECKPOINT_OR_RUN_DIR", "start from this checkpoint or run"),
    "--run-dir": ("run_dir", str, "DIR", "where checkpoints and events.jsonl go"),
    "--max-steps": ("max_steps", int, "N", "optimizer steps"),
    "--epochs": ("epochs", int, "N", "passes over the data"),
    "--batch-size": ("batch_size", int, "N", "global micro-batch in sequences"),
    "--accumulation": ("optim.accumulation", int, "N", "micro-batches per optimizer step"),
    "--lr": ("optim.lr", float, "LR", "peak learning rate (default: the method's, scaled to the --init run; "
                                      "docs/training.md#defaults)"),
    "--seq-len": ("data.seq_len", int, "N", "pretrain window length"),
    "--max-len": ("data.max_len", int, "N", "longest SFT/DPO sample"),
    "--device": ("device", str, "DEV", "auto, cpu, cuda or mps"),
    "--precision": ("precision", str, "P", "auto, fp32, bf16 or fp16"),
    "--save-every": ("save_every", int, "N", "steps between checkpoints"),
    "--log-every": ("log_every", int, "N", "steps between metric events"),
}


def register(subparsers) -> None:
    from core.cli.launch_cmd import add_target_arguments
    from core.train.cli import add_common_arguments

    train = subparsers.add_parser("train", help=f"train a model ({', '.join(method_names())})",
                                  description="Train a model. Settings come from --config, then flags, then --set.")
    methods = train.add_subparsers(dest="method", metavar="METHOD")
    for spec in all_methods():
        p = methods.add_parser(spec.name, help=spec.help, description=spec.help)
        add_common_arguments(p)
        add_target_arguments(p)
        p.add_argument("--data", action="append", default=[], metavar="FILE", help="training data file (repeatable)")
        for flag, (_, typ, metavar, help_) in FLAGS.items():
            p.add_argument(flag, type=typ, metavar=metavar, help=help_)
        p.add_argument("--dry-run", action="store_true",
                       help="print the run plan (device, precision, compile, steps, parameters, memory) and exit: "
                            "the data and models are built as the run would, nothing trains")
        p.add_argument("--json", action="store_true", help="with --dry-run: the plan as one JSON object")
        p.add_argument("--time", action="store_true",
                       help="with --dry-run: time a few optimizer steps here for a wall-time estimate")
        p.set_defaults(func=run)
    train.set_defaults(func=lambda args: train.print_help() or 0)


def flag_overrides(args: argparse.Namespace) -> list[str]:
    out = [f"method={json.dumps(args.method)}"]
    if args.data:
        out.append(f"data.files={json.dumps(args.data)}")
    for flag, (key, _, _, _) in FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            out.append(f"{key}={json.dumps(value)}")
    return out


def run(args: argparse.Namespace) -> int:
    from core.train.cli import run_with

    args.overrides = flag_overrides(args) + list(args.overrides)
    if args.dry_run:
        from core.train.cli import dry_run

        return dry_run(args, as_json=args.json, timed=args.time)
    if args.target != "local":  # a Slurm or SkyPilot target: write the run folder and submit its launch file
        from core.cli.launch_cmd import load_target, submit_training

        target = load_target(args)
        if target.kind != "local":
            return submit_training(args, target)
    return run_with(args)
