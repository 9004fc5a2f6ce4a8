"""The `minimind` command.

Each command group lives in its own module under `core.cli` and exposes `register(subparsers)`, which adds its
sub-commands and sets `func` on each parser. Modules are imported lazily so `minimind --help` stays fast and a
missing optional part (e.g. llama.cpp) only affects its own commands.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# (module, help) in the order they appear in `minimind --help`.
COMMAND_MODULES = [
    "core.cli.model_cmd",      # model info
    "core.cli.tokenizer_cmd",  # tokenizer train
    "core.cli.data_cmd",       # data check|prepare|stats
    "core.cli.train_cmd",      # train <method> (one subcommand per core/methods.py entry)
    "core.cli.launch_cmd",     # launch-file (a cluster target's sbatch script or SkyPilot YAML)
    "core.cli.sweep_cmd",      # sweep SPEC --out DIR
    "core.cli.infer_cmd",      # chat, eval
    "core.cli.serve_cmd",      # serve
    "core.cli.export_cmd",     # export gguf|hf, import
    "core.cli.demo_cmd",       # demo
]


class CLIError(Exception):
    """An error meant for the user: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minimind", description="Train, evaluate, chat with and export MiniMind models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # the command group is not part of this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"minimind: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
