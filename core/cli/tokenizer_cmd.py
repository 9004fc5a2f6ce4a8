"""`minimind tokenizer train`: train a byte-level BPE tokenizer on JSONL/.txt files."""
from __future__ import annotations

import sys
import time

from core.cli import CLIError


def register(subparsers) -> None:
    group = subparsers.add_parser("tokenizer", help="train a tokenizer")
    sub = group.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 0)

    train = sub.add_parser("train", help="train a byte-level BPE tokenizer (MiniMind layout, ChatML template)")
    train.add_argument("--data", nargs="+", required=True, metavar="FILE",
                       help=".jsonl (pretrain/SFT/DPO/RL) or .txt files")
    train.add_argument("--vocab-size", type=int, default=6400, help="target vocabulary size (default 6400)")
    train.add_argument("--out", required=True, metavar="DIR", help="directory for tokenizer.json + tokenizer_config.json")
    train.add_argument("--max-records", type=int, default=None, metavar="N", help="read at most N records in all")
    train.add_argument("--pre-tokenizer", choices=["gpt2", "qwen2"], default="gpt2",
                       help="how text is split before BPE: gpt2 (MiniMind's, the default) or qwen2 (one token per "
                            "digit, so numbers copy exactly: what the demo uses for tool calls)")
    train.set_defaults(func=_train)


def _train(args) -> int:
    from core.tokenizer import train_tokenizer
    from core.tokenizer.samples import chars_per_token

    started = time.monotonic()
    line_open = [False]  # a progress line waits for its newline

    def progress(done: int, total: int | None) -> None:
        line_open[0] = True
        of = f"/{total:,}" if total else ""
        print(f"\rreading records {done:,}{of}", end="", file=sys.stderr, flush=True)
        if total and done >= total:
            print("\ncomputing merges...", file=sys.stderr, flush=True)
            line_open[0] = False

    try:
        tok = train_tokenizer(args.data, vocab_size=args.vocab_size, out_dir=args.out, progress=progress,
                              max_records=args.max_records, pre_tokenizer=args.pre_tokenizer)
    except (ValueError, FileNotFoundError) as exc:
        if line_open[0]:
            print(file=sys.stderr)
        raise CLIError(str(exc)) from None
    print(f"tokenizer saved to {args.out} in {time.monotonic() - started:.1f} s")
    note = "" if tok.vocab_size == args.vocab_size else f" (asked for {args.vocab_size}: the corpus ran out of pairs)"
    print(f"vocab size: {tok.vocab_size}{note}")
    for name, ratio in chars_per_token(tok).items():
        print(f"{name}: {ratio:.2f} chars/token")
    print(f"hash: {tok.hash}")
    return 0
