"""`minimind demo`: the whole pipeline headless (data → tokenizer → pretrain → SFT → GGUF → chat), see core/demo.py."""
from __future__ import annotations

import json

from core.cli import CLIError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="run the whole pipeline on the built-in demo data (about 3 CPU-minutes)",
        description="Generate the built-in demo data, train a tokenizer, pretrain and SFT a tiny model with the "
                    "real trainer, export it to GGUF (q8_0) with a llama.cpp parity check, and chat with it. "
                    "Progress goes to stderr; the summary (or --json report) to stdout.")
    p.add_argument("--out", default="minimind-demo", metavar="DIR", help="output folder (default: ./minimind-demo)")
    p.add_argument("--fast", action="store_true", help="a much shorter run (seconds; a smoke test, not a model)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads per trainer (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON instead of the summary")
    p.set_defaults(func=run)


def run(args) -> int:
    from core.demo import DemoError, format_report, run_demo

    try:
        report = run_demo(args.out, fast=args.fast, threads=args.threads)
    except DemoError as exc:
        raise CLIError(str(exc)) from None
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0
