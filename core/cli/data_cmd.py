"""`minimind data check|convert|prepare|stats|demo`: validate dataset files, convert them to MiniMind JSONL, build the
token cache, measure, make demo data."""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import time

from core.cli import CLIError
from core.data.formats import FORMATS
from core.data.records import KINDS, RECORD_KINDS, TOKEN_KINDS



def register(subparsers) -> None:
    group = subparsers.add_parser("data", help="check, tokenize and measure datasets")
    sub = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 0)

    check = sub.add_parser("check", help="list every bad record as file:line: field: message (line: the row of "
                                         "a Parquet, Arrow or JSON-array file)")
    check.add_argument("file", help="JSONL, JSON, Parquet, a datasets.save_to_disk folder, or .txt")
    check.add_argument("--kind", choices=list(KINDS), help="default: detected")
    check.add_argument("--format", choices=["auto", *FORMATS], default="auto",
                       help="how rows are read (default: the file's .mapping.json, else detected)")
    check.add_argument("--max-errors", type=int, default=100, metavar="N", help="print at most N problems (100)")
    check.set_defaults(func=_check)

    convert = sub.add_parser("convert", help="write a ShareGPT, Alpaca, OpenAI or preference dataset (JSONL, JSON, "
                                             "Parquet, Arrow) as MiniMind JSONL")
    convert.add_argument("input", metavar="IN", help="JSONL, JSON, Parquet, or a datasets.save_to_disk folder")
    convert.add_argument("output", metavar="OUT", help="the MiniMind JSONL file to write")
    convert.add_argument("--format", choices=["auto", *FORMATS], default="auto",
                         help="how rows are read (default: the file's .mapping.json, else detected)")
    convert.add_argument("--kind", choices=list(RECORD_KINDS), help="default: detected")
    convert.add_argument("--max-errors", type=int, default=100, metavar="N", help="print at most N problems (100)")
    convert.set_defaults(func=_convert)

    prepare = sub.add_parser("prepare", help="tokenize a dataset into the token cache ahead of training "
                                             "(Ctrl-C stops and keeps the finished shards; run again to go on)")
    prepare.add_argument("file")
    prepare.add_argument("--tokenizer", required=True, metavar="DIR")
    prepare.add_argument("--kind", choices=TOKEN_KINDS, help="default: detected")
    prepare.add_argument("--seq-len", type=int, required=True, metavar="N",
                         help="pretrain: window length (any run re-uses the cache); sft/dpo: truncation length "
                              "(part of the cache's identity: a run with another max_len tokenizes again)")
    prepare.add_argument("--cache-dir", metavar="DIR",
                         help="default: the workspace's cache folder ($MINIMIND_WORKSPACE/cache, else "
                              "~/MiniMindStudio/cache), where the studio's runs look")
    prepare.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                         help="stop at the first bad record (default) or skip and count bad records; a run "
                              "re-uses the cache only with the same setting (data.on_error)")
    prepare.add_argument("--events", action="store_true",
                         help="print `prepare` events (docs/events.md) as JSON lines on stdout, the summary on "
                              "stderr (the studio reads them)")
    prepare.set_defaults(func=_prepare)

    caches = sub.add_parser("caches", help="list the token caches of a cache directory (size, state); delete one")
    caches.add_argument("--cache-dir", metavar="DIR", help="default: the workspace's cache folder")
    caches.add_argument("--delete", metavar="NAME", help="delete this entry (a name the listing shows)")
    caches.set_defaults(func=_caches)

    stats = sub.add_parser("stats", help="records, tokens, chars/token and length percentiles")
    stats.add_argument("file")
    stats.add_argument("--tokenizer", required=True, metavar="DIR")
    stats.add_argument("--kind", choices=list(KINDS), help="default: detected")
    stats.add_argument("--max-records", type=int, default=None, metavar="N", help="measure the first N records")
    stats.set_defaults(func=_stats)

    demo = sub.add_parser("demo", help="write the built-in demo datasets (pretrain, sft, dpo, rl JSONL)")
    demo.add_argument("--out", required=True, metavar="DIR")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)


def _kind(path, kind):
    from core.data import DataError, detect_kind

    if kind:
        return kind
    try:
        return detect_kind(path)
    except (DataError, OSError) as exc:
        raise CLIError(str(exc)) from None


def _mapping(args):
    from core.data import DataError
    from core.data.convert import mapping_for

    try:
        return mapping_for(args.file if hasattr(args, "file") else args.input, args.format)
    except (DataError, OSError) as exc:
        raise CLIError(str(exc)) from None


def _check(args) -> int:
    from core.data import DataError, DataReport, detect_kind
    from core.data.records import iter_records

    mapping = _mapping(args)
    report = DataReport(max_errors=args.max_errors)
    try:
        kind = args.kind or detect_kind(args.file, mapping=mapping)
        for _ in iter_records(args.file, kind, on_error="skip", report=report, mapping=mapping):
            pass
    except DataError as exc:  # the file itself is missing or unreadable
        raise CLIError(str(exc)) from None
    _print_problems(report)
    print(f"{args.file}: kind {kind}, format {mapping.format} ({mapping.origin}), {report.records} good records, "
          f"{report.skipped} bad", file=sys.stderr)
    return 1 if report.skipped else 0


def _print_problems(report) -> None:
    """Every listed problem as FILE:LINE: field: message, then how many more were counted past the list."""
    for err in report.errors:
        print(err)
    if report.skipped > len(report.errors):
        print(f"... and {report.skipped - len(report.errors)} more problems")


def _convert(args) -> int:
    from pathlib import Path

    from core.data import DataError
    from core.data.convert import ConversionStopped, convert_file

    if Path(args.output).resolve() == Path(args.input).resolve():
        raise CLIError(f"{args.output}: the output would overwrite the input; choose another file")
    last = [0.0]

    def progress(done, total, records):
        now = time.monotonic()
        if now - last[0] >= 10.0 or done >= total:
            last[0] = now
            print(f"converting {args.input}: {100 * done / total:.0f} %, {records:,} records", file=sys.stderr,
                  flush=True)

    try:
        with _stop_on_signals() as stopped:
            report, kind, mapping = convert_file(args.input, args.output, args.format, args.kind, args.max_errors,
                                                 progress=progress, should_stop=stopped)
    except (DataError, ValueError, OSError, ConversionStopped) as exc:
        raise CLIError(str(exc)) from None
    _print_problems(report)
    print(f"{args.output}: {report.records} {kind} records from {args.input} (format {mapping.format}, "
          f"{mapping.origin}); {report.skipped} bad rows left out", file=sys.stderr)
    return 1 if report.skipped else 0


def _load_tokenizer(directory):
    from core.tokenizer import MiniMindTokenizer

    try:
        return MiniMindTokenizer.load(directory)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot load the tokenizer from {directory}: {exc}") from None


class ProgressLine:
    """`describe_prepare` on stderr: redrawn in place on a terminal, a new line every 10 s otherwise (a log)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = 0.0

    def __call__(self, progress) -> None:
        from core.preparation import describe_prepare

        now = time.monotonic()
        final = progress.state in ("done", "stopped")
        if not (self.tty or final or now - self.last >= 10.0):
            return
        self.last = now
        text = describe_prepare(progress.fields(), detail=True)
        print(f"\r\x1b[2K{text}" if self.tty else text, end="\n" if final or not self.tty else "",
              file=self.stream, flush=True)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT/SIGTERM ask the build to stop after the shard in progress (kept for the next attempt)."""
    stop = {"asked": False}

    def ask(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt  # a second Ctrl-C: now
        stop["asked"] = True

    old = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: stop["asked"]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _cache_dir(args):
    from core.launch.targets import workspace_cache_dir

    return args.cache_dir or str(workspace_cache_dir())


def _print_event(progress) -> None:
    """One `prepare` event, a JSON line on stdout."""
    from core.event_schema import make_event

    print(json.dumps(make_event("prepare", 0, **progress.fields())), flush=True)


def _prepare(args) -> int:
    from core.data import DataError, DPODataset, PretrainDataset, SFTDataset
    from core.preparation import Preparation, PreparationStopped

    args.cache_dir = _cache_dir(args)
    out = sys.stderr if args.events else sys.stdout  # with --events, stdout carries nothing but events
    kind = _kind(args.file, args.kind)
    if kind not in TOKEN_KINDS:
        raise CLIError(f"{args.file} is {kind} data; only pretrain, text, sft and dpo data are tokenized ahead")
    tok = _load_tokenizer(args.tokenizer)
    started = time.monotonic()
    cls = {"pretrain": PretrainDataset, "text": PretrainDataset, "sft": SFTDataset, "dpo": DPODataset}[kind]
    try:
        with _stop_on_signals() as stopped:
            preparation = Preparation(report=_print_event if args.events else ProgressLine(), should_stop=stopped,
                                      interval=0.5)
            ds = cls(args.file, tok, args.seq_len, args.cache_dir, on_error=args.on_error, preparation=preparation)
    except PreparationStopped:
        raise CLIError("stopped; the finished part of the cache is kept: run the same command again to go on "
                       "from there") from None
    except DataError as exc:
        raise CLIError(f"{exc}\n  list every problem with `minimind data check {args.file}`, "
                       "or pass --on-error skip to leave bad records out") from None
    cache = ds.cache
    print(f"cache: {cache.path} ({'re-used' if cache.reused else 'built'} in {time.monotonic() - started:.1f} s)",
          file=out)
    print(f"records: {ds.report.records}, skipped: {ds.report.skipped}, tokens: {ds.num_tokens:,}", file=out)
    for err in ds.report.errors:
        print(f"  skipped {err}", file=out)
    if kind in ("pretrain", "text"):
        print(f"windows of {args.seq_len} tokens: {len(ds):,}", file=out)
    else:
        print(f"sequences: {len(ds):,}, truncated at {args.seq_len}: {100 * ds.truncated_fraction:.1f}%, "
              f"left out (no assistant token within {args.seq_len}): {ds.num_no_target}", file=out)
    return 0


def _caches(args) -> int:
    from pathlib import Path

    from core.data.cache import delete_cache, describe_cache_options, list_caches

    args.cache_dir = _cache_dir(args)
    entries = list_caches(args.cache_dir)
    if args.delete:
        match = [e for e in entries if e.name == args.delete]
        if not match:
            raise CLIError(f"{args.cache_dir}: no cache entry {args.delete!r}; "
                           f"`minimind data caches --cache-dir {args.cache_dir}` lists them")
        try:
            delete_cache(match[0].path)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        print(f"deleted {match[0].path} ({match[0].size_bytes / 1e6:.1f} MB)")
        return 0
    if not entries:
        print(f"{args.cache_dir}: no token caches")
    for e in entries:
        state = "ready" if e.complete else f"partial, {100 * e.done_fraction:.0f} % (resumes when asked for)"
        files = ", ".join(Path(f).name for f in e.files) or "?"
        print(f"{e.name}  {e.kind}  {e.size_bytes / 1e6:.1f} MB  {e.num_tokens:,} tokens  {state}  [{files}]  "
              f"{describe_cache_options(e)}")
    return 0


def _texts(rec, kind, tok) -> list[str]:
    if kind in ("pretrain", "text"):
        return [rec["text"]]
    if kind == "sft":
        return [tok.apply_chat_template(rec["conversations"])]
    if kind == "dpo":
        return [tok.apply_chat_template(rec["chosen"]), tok.apply_chat_template(rec["rejected"])]
    msgs = rec["conversations"][:-1] if rec["conversations"][-1]["role"] == "assistant" else rec["conversations"]
    return [tok.apply_chat_template(msgs, add_generation_prompt=True)]


def _stats(args) -> int:
    import numpy as np

    from core.data import DataError, DataReport, read_records
    from core.data.cache import encode_texts

    kind = _kind(args.file, args.kind)
    tok = _load_tokenizer(args.tokenizer)
    report, texts = DataReport(), []
    try:
        for i, rec in enumerate(read_records(args.file, kind, on_error="skip", report=report)):
            if args.max_records is not None and i >= args.max_records:
                break
            texts += _texts(rec, kind, tok)
    except DataError as exc:
        raise CLIError(str(exc)) from None
    if not texts:
        raise CLIError(f"{args.file}: no valid {kind} records")
    lengths = np.asarray([len(ids) for i in range(0, len(texts), 1024)
                          for ids in encode_texts(tok, texts[i:i + 1024])])
    chars = sum(len(t) for t in texts)
    p50, p90, p99 = np.percentile(lengths, [50, 90, 99])
    print(f"file: {args.file} (kind {kind})")
    print(f"records: {report.records:,} good, {report.skipped:,} bad")
    print(f"sequences: {len(lengths):,}, tokens: {lengths.sum():,}, chars/token: {chars / max(lengths.sum(), 1):.2f}")
    print(f"tokens per sequence: mean {lengths.mean():.1f}, p50 {p50:.0f}, p90 {p90:.0f}, p99 {p99:.0f}, "
          f"max {lengths.max()}")
    return 0


def _demo(args) -> int:
    from core.data import generate_demo_data

    for kind, path in generate_demo_data(args.out, seed=args.seed).items():
        print(f"{kind}: {path}")
    return 0
