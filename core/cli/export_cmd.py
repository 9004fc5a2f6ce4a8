"""`minimind export gguf|hf` and `minimind import`: move models to llama.cpp/Ollama/HF and back."""
from __future__ import annotations

import json
import sys

from core.cli import CLIError
from core.export.types import GGUF_TYPES

TYPE_HELP = "; ".join(f"{name}: {t.summary}" for name, t in GGUF_TYPES.items())

def register(subparsers) -> None:
    group = subparsers.add_parser("export", help="export a model to GGUF (llama.cpp, Ollama, LM Studio) or HF")
    sub = group.add_subparsers(dest="export_command", metavar="SUBCOMMAND")
    group.set_defaults(func=lambda args: group.print_help() or 0)

    g = sub.add_parser("gguf", help="write a GGUF file, an Ollama Modelfile, and check it against llama.cpp")
    g.add_argument("--model", required=True, metavar="PATH", help="run directory or checkpoint directory")
    g.add_argument("--type", default="f16", choices=list(GGUF_TYPES),
                   help=f"tensor type (default f16). {TYPE_HELP}")
    g.add_argument("--heldout", metavar="FILE",
                   help="text (.txt, or .jsonl records) to measure a quantized file against the f32 export on "
                        "(default: the run's first eval file, else a built-in passage)")
    g.add_argument("--out", required=True, metavar="FILE.gguf", help="output file")
    g.add_argument("--no-check", action="store_true", help="skip the llama.cpp parity check (not recommended)")
    g.add_argument("--json", action="store_true", help="print the full report as JSON on stdout")
    g.set_defaults(func=_gguf)

    h = sub.add_parser("hf", help="write a Hugging Face folder (Llama / Qwen3 / Qwen3-MoE / Qwen2-MoE)")
    h.add_argument("--model", required=True, metavar="PATH", help="run directory or checkpoint directory")
    h.add_argument("--out", required=True, metavar="DIR", help="output folder")
    h.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    h.set_defaults(func=_hf)

    i = subparsers.add_parser("import", help="import a MiniMind .pth or an HF Llama/Qwen3 folder as a checkpoint")
    i.add_argument("--from", dest="source", required=True, metavar="PATH", help=".pth file or HF model folder")
    i.add_argument("--out", required=True, metavar="DIR", help="checkpoint directory to create")
    i.add_argument("--tokenizer", metavar="DIR", help="tokenizer folder (default: next to the source)")
    i.add_argument("--heads", type=int, metavar="N", help=".pth without QK-norm: query heads (default 8)")
    i.add_argument("--experts-per-tok", type=int, metavar="K",
                   help=".pth MoE: top-k (default 2 with a shared expert, else 1)")
    i.set_defaults(func=_import)


def _progress(done: int, total: int, message: str) -> None:
    print(f"\r[{done}/{total}] {message[:60]:<60}", end="" if done < total else "\n", file=sys.stderr, flush=True)


def _gguf(args) -> int:
    from core.export import ParityError, QuantizeError, UnsupportedExport, export_gguf
    from core.model.io import CheckpointError

    try:
        report = export_gguf(args.model, args.out, args.type, progress=_progress, check=not args.no_check,
                             heldout=args.heldout)
    except (UnsupportedExport, QuantizeError, CheckpointError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    except ParityError as exc:
        print(f"\nminimind: parity check FAILED: {exc}", file=sys.stderr)
        if exc.report:
            print(json.dumps({k: v for k, v in exc.report.items() if not k.startswith("greedy_")}, indent=2),
                  file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"wrote {report['path']} ({report['file_bytes'] / 2**20:.1f} MiB, {report['arch']}, {report['qtype']}) "
          f"in {report['seconds']:.1f} s")
    if report.get("quantizer"):
        counts = ", ".join(f"{n} × {t}" for t, n in sorted(report["type_counts"].items()))
        print(f"  quantized by {report['quantizer']}: {counts}")
    for line in report["fallbacks"]:
        print(f"  fallback {line}")
    if report.get("note"):
        print(f"  note: {report['note']}")
    if report.get("modelfile"):
        print(f"Ollama: ollama create minimind -f {report['modelfile']}")
    p = report.get("parity")
    if p:
        if p["greedy_identical"]:
            greedy = "identical"
        else:
            where = p["greedy_first_divergence"]
            greedy = f"diverges at token {where}" + (" (a near-tie)" if p["greedy_divergence_is_tie"] else "")
        print(f"parity with llama.cpp: PASSED (tokenizer identical, max |Δlogit| {p['max_abs_logit_diff']:.2e} = "
              f"{p['rel_logit_diff']:.1e} of the logit range, top-1 agreement {p['top1_agreement']:.0%}, "
              f"32-token greedy continuation {greedy})")
        if p.get("quality"):
            print(quality_line(p["quality"]))
    else:
        print("parity: not checked (--no-check)")
    return 0


def quality_line(q: dict) -> str:
    return (f"against the f32 export on {q['n_tokens']} held-out tokens ({q['heldout']}): perplexity "
            f"{q['perplexity_f32']:.4g} -> {q['perplexity']:.4g} ({q['perplexity_change']:+.2%}), top-1 agreement "
            f"{q['top1_agreement']:.1%}, mean KL {q['mean_kl']:.2e} nats")


def _hf(args) -> int:
    from core.export import UnsupportedExport, export_hf
    from core.model.io import CheckpointError

    try:
        report = export_hf(args.model, args.out, dtype=args.dtype)
    except (UnsupportedExport, CheckpointError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(f"wrote {report['path']} as {report['architecture']} ({report['dtype']}); load it with "
          f"transformers.AutoModelForCausalLM.from_pretrained({report['path']!r})")
    if report.get("note"):
        print(f"  note: {report['note']}")
    return 0


def _import(args) -> int:
    from core.export import ImportCheckpointError, import_checkpoint
    from core.model.io import CheckpointError

    try:
        report = import_checkpoint(args.source, args.out, tokenizer_dir=args.tokenizer, heads=args.heads,
                                   experts_per_tok=args.experts_per_tok)
    except (ImportCheckpointError, CheckpointError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    c = report["config"]
    kind = "MoE" if c["use_moe"] else "dense"
    print(f"imported {report['source']} -> {report['path']}: {kind}, {c['num_hidden_layers']} layers, hidden "
          f"{c['hidden_size']}, {c['num_attention_heads']}/{c['num_key_value_heads']} heads, vocab "
          f"{c['vocab_size']}, {report['params']:,} parameters")
    return 0
