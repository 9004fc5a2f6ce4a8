"""`minimind eval` subcommands (registered under `minimind eval` by core.cli.infer_cmd):

  tools          tool-use evaluation of a checkpoint, a GGUF or an OpenAI-compatible endpoint (core/eval/tool_use.py)
  bench          multiple-choice benchmarks by log-likelihood, with intervals and contamination (core/eval/bench.py)
  ppl            perplexity and bits per byte on held-out text (core/infer/perplexity.py)
  contamination  the share of a benchmark's items whose n-grams occur in a run's training data (lineage included)
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

from core.cli import CLIError
from core.config.serve import API_KEY_ENV


def add_eval_subcommands(ev) -> None:
    # `minimind eval --model M ...` stays as it was; `--model` is checked by hand so `eval tools` can run without it
    for action in ev._actions:
        if action.dest == "model":
            action.required = False
    answer = ev.get_default("func")

    def answer_prompts(args) -> int:
        if not args.model:
            raise CLIError("eval: --model is required (or use a subcommand: minimind eval tools --help)")
        return answer(args)

    ev.set_defaults(func=answer_prompts)
    sub = ev.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    tools = sub.add_parser("tools", help="tool-use cases: well-formed calls, right tool, valid arguments, "
                           "correct answers, turns", description=__doc__)
    target = tools.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", metavar="PATH", help="checkpoint dir, run dir or .gguf file")
    target.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8998/v1")
    tools.add_argument("--api-model", default=None, help="model name sent to the endpoint (default: its first)")
    _add_api_key(tools)
    tools.add_argument("--cases", metavar="F.jsonl", help="agent-task JSONL (conversations with tools + gt); "
                       "default: the 20 built-in cases")
    tools.add_argument("--max-turns", type=int, default=3, help="answers per case (default 3)")
    tools.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer (default 256)")
    tools.add_argument("--no-baseline", action="store_true", help="skip answering each case without tools")
    tools.add_argument("--constrain", action="store_true",
                       help="decode calls under the offered tools' schemas (tool_choice auto; checkpoints and GGUFs: "
                            "an endpoint constrains as its server does)")
    tools.add_argument("--samples", type=int, default=0, metavar="K",
                       help="also answer every case K times sampled, as RL rollouts sample, and report pass@K and "
                            "the share of cases an RL group could learn from (checkpoints and GGUFs)")
    tools.add_argument("--temperature", type=float, default=1.0, help="sampling temperature for --samples (1.0)")
    tools.add_argument("--device", default="cpu", help="torch device for checkpoints")
    tools.add_argument("--out", metavar="F.json", help="write the per-case results and the summary as JSON")
    tools.set_defaults(func=run_tools)
    _add_bench(sub)
    _add_ppl(sub)
    _add_contamination(sub)


def _add_api_key(parser) -> None:
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or "none", metavar="KEY",
                        help=f"--endpoint: the server's API key, sent as 'Authorization: Bearer KEY' (default: "
                             f"${API_KEY_ENV}; `minimind serve --api-key` reads the same variable)")


def _explains_refused_key(run):
    """A 401 from --endpoint ends in one line saying which key to send, not in the client's traceback."""
    @functools.wraps(run)
    def checked(args) -> int:
        try:
            return run(args)
        except Exception as exc:
            if args.endpoint and getattr(exc, "status_code", None) == 401:
                raise CLIError(f"{args.endpoint}: the server refused the API key (401); pass the server's key "
                               f"with --api-key KEY or in ${API_KEY_ENV}") from None
            raise
    return checked


def _target(args):
    from core.eval.tool_use import BackendTarget, EndpointTarget

    if args.endpoint:
        return EndpointTarget(args.endpoint, args.api_model, args.api_key, max_new_tokens=args.max_new_tokens), None
    backend = _open_backend(args)
    return BackendTarget(backend, args.max_new_tokens, args.constrain), backend


def _open_backend(args):
    from core.infer.backend import open_backend

    try:
        return open_backend(Path(args.model), device=args.device)
    except (FileNotFoundError, OSError, ValueError, RuntimeError) as exc:
        raise CLIError(str(exc)) from None


@_explains_refused_key
def run_tools(args) -> int:
    from core.data import DataError
    from core.eval.tool_use import builtin_cases, evaluate_tool_use, load_cases

    if args.samples > 0 and args.endpoint:  # refused before any case is asked, not after
        raise CLIError("--samples needs --model (a checkpoint or a GGUF): an endpoint's sampling is its own")
    try:
        cases = load_cases(args.cases) if args.cases else builtin_cases()
    except (DataError, OSError) as exc:
        raise CLIError(str(exc)) from None
    target, backend = _target(args)
    progress = (lambda i, n: print(f"\r{i}/{n} cases", end="", file=sys.stderr, flush=True))
    try:
        result = evaluate_tool_use(target, cases, args.max_turns, args.max_new_tokens,
                                   without_tools=not args.no_baseline, progress=progress)
        if args.samples > 0:
            print(file=sys.stderr)
            result["sampled"] = _coverage(target, cases, args)
    finally:
        print(file=sys.stderr)
        if backend is not None:
            backend.close()
    print(f"{'case':<12} {'well-formed':>11} {'right tool':>10} {'valid args':>10} {'correct':>8} {'turns':>5}")
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    for r in result["cases"]:
        print(f"{r['id']:<12} {yes(r['well_formed']):>11} {yes(r['right_tool']):>10} "
              f"{yes(r['valid_arguments']):>10} {yes(r['correct']):>8} {r['turns']:>5}")
    s = result["summary"]
    if getattr(target, "constrain", False):
        print("answers decoded under the offered tools' schemas (--constrain)")
    print(f"{'total':<12} {s['well_formed']:>11.0%} {s['right_tool']:>10.0%} {s['valid_arguments']:>10.0%} "
          f"{s['correct']:>8.0%} {s['mean_turns']:>5.2f}")
    if s["correct_without_tools"] is not None:
        print(f"correct without tools: {s['correct_without_tools']:.0%} of {s['cases']} cases")
    if "sampled" in result:
        _print_coverage(result["sampled"], args, len(cases))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def _coverage(target, cases, args) -> dict:
    from core.eval.tool_use import sampled_coverage

    progress = (lambda i, n: print(f"\r{i}/{n} sampled answers", end="", file=sys.stderr, flush=True))
    return sampled_coverage(target, cases, args.samples, args.temperature, args.max_turns, progress)


def _print_coverage(cov: dict, args, n_cases: int) -> None:
    k = args.samples
    print(f"\nsampled at T={args.temperature}, {k} answers per case (what RL can reinforce; docs/rl.md):")
    print(f"{'tool':<16} {'cases':>5} {'sampled':>8} {f'pass@{k}':>8} {'signal':>7}")
    for tool, r in [*cov["by_tool"].items(), ("total", {**cov, "cases": n_cases})]:
        print(f"{tool:<16} {r['cases']:>5} {r['sampled']:>8.1%} {r['pass_at_k']:>8.0%} {r['signal']:>7.0%}")


# ---- eval bench / ppl / contamination -------------------------------------------------------------------------

def _add_bench(sub) -> None:
    from core.eval.tasks import BUILTIN, FORMATS

    bench = sub.add_parser("bench", help="multiple-choice benchmarks scored by log-likelihood: acc, acc_norm, "
                           "95%% intervals, contamination", description=__doc__)
    target = bench.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", metavar="PATH", help="checkpoint dir, run dir or .gguf file")
    target.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL whose /completions "
                        "returns prompt log-probs (echo + logprobs + max_tokens 0)")
    bench.add_argument("--api-model", help="model name sent to the endpoint (default: the server's first)")
    _add_api_key(bench)
    bench.add_argument("--task", action="append", required=True, metavar="TASK",
                       help=f"a benchmark file or a built-in set ({', '.join(BUILTIN)}); repeat for several")
    bench.add_argument("--format", choices=FORMATS, help="file format (default: detected from the file)")
    bench.add_argument("--k-shot", type=int, default=0, help="solved examples before each question (default 0)")
    bench.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (torch)")
    bench.add_argument("--limit", type=int, help="score the first N items of each task")
    bench.add_argument("--run", metavar="RUN_DIR", help="training run for the contamination check (default: "
                       "the model's own run when it is one)")
    bench.add_argument("--ngram", type=int, default=13, help="n-gram length of the contamination check (13)")
    bench.add_argument("--device", default="cpu", help="torch device for checkpoints")
    bench.add_argument("--details", action="store_true", help="print every item: options' scores and the choice")
    bench.add_argument("--out", metavar="F.json", help="write every result (items, summary, contamination)")
    bench.set_defaults(func=run_bench)


def _add_ppl(sub) -> None:
    ppl = sub.add_parser("ppl", help="perplexity and bits per byte on held-out text", description=__doc__)
    ppl.add_argument("--model", required=True, metavar="PATH", help="checkpoint dir, run dir or .gguf file")
    ppl.add_argument("--data", required=True, metavar="FILE", help='held-out text: JSONL {"text": ...} per line, '
                     "or .txt (one text per paragraph)")
    ppl.add_argument("--max-tokens", type=int, default=512, help="truncate each text to this many tokens")
    ppl.add_argument("--limit", type=int, help="use at most N texts")
    ppl.add_argument("--device", default="cpu", help="torch device for checkpoints")
    ppl.set_defaults(func=run_ppl)


def _add_contamination(sub) -> None:
    from core.eval.tasks import FORMATS

    cont = sub.add_parser("contamination", help="share of a benchmark's items found in a run's training data",
                          description=__doc__)
    cont.add_argument("--task", required=True, metavar="TASK", help="a benchmark file or a built-in set")
    cont.add_argument("--run", required=True, metavar="RUN_DIR", help="the run (its `init` chain is followed)")
    cont.add_argument("--format", choices=FORMATS, help="file format (default: detected)")
    cont.add_argument("--ngram", type=int, default=13, help="n-gram length (13)")
    cont.add_argument("--out", metavar="F.json", help="write the report with a flag per item")
    cont.set_defaults(func=run_contamination)


def _load_task(args, name: str):
    from core.data import DataError
    from core.eval.tasks import load_task

    try:
        return load_task(name, args.format, getattr(args, "limit", None))
    except (DataError, OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def _contamination_line(report: dict) -> str:
    if not report.get("checked"):
        return "not checked"
    text = f"{report['share']:.0%} of {report['items_checked']} ({report['ngram']}-grams)"
    return text + "  HIGH: scores overstate ability" if report["flagged"] else text


@_explains_refused_key
def run_bench(args) -> int:
    from core.eval.bench import EndpointScorer, score_task

    tasks = [_load_task(args, name) for name in args.task]
    backend = None if args.endpoint else _open_backend(args)
    target = EndpointScorer(args.endpoint, args.api_model, args.api_key) if args.endpoint else backend
    results = []
    try:
        for task in tasks:
            progress = (lambda i, n, t=task.name: print(f"\r{t}: {i}/{n} items", end="", file=sys.stderr,
                                                          flush=True))
            results.append(score_task(target, task, k_shot=args.k_shot, batch_size=args.batch_size,
                                      progress=progress, run=args.run or args.model, ngram=args.ngram))
            print(file=sys.stderr)
    finally:
        if backend is not None:
            backend.close()
    if args.details:
        for r in results:
            for item in r["items"]:
                mark = "right" if item["correct"] else "wrong"
                print(f"{r['task']} {item['id']}: {mark} (chose {item['chosen']}, gold {item['gold']}) "
                      f"scores {item['scores']}  {item['question'][:60]!r}")
    print(f"{'task':<20} {'n':>5} {'acc':>6} {'95% interval':>15} {'acc_norm':>8} {'95% interval':>15} "
          f"{'tok/s':>8}  contamination")
    for r in results:
        s = r["summary"]
        ci = lambda pair: f"[{pair[0]:.3f}, {pair[1]:.3f}]"  # noqa: E731
        print(f"{r['task'][:20]:<20} {s['n']:>5} {s['acc']:>6.3f} {ci(s['acc_ci95']):>15} {s['acc_norm']:>8.3f} "
              f"{ci(s['acc_norm_ci95']):>15} {s['tokens_per_s'] or 0:>8.0f}  {_contamination_line(r['contamination'])}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


def run_ppl(args) -> int:
    from core.infer.perplexity import perplexity, read_texts

    try:
        texts = read_texts(args.data, args.limit)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    backend = _open_backend(args)
    try:
        result = perplexity(backend, texts, args.max_tokens)
    except ValueError as exc:
        raise CLIError(f"--data: {exc}") from None
    finally:
        backend.close()
    print(f"perplexity {result['perplexity']:.4f}  bits/byte {result['bits_per_byte']:.4f}  "
          f"({result['ppl_tokens']} tokens, {result['ppl_bytes']} bytes, {result['ppl_texts']} texts)")
    print(json.dumps({"model": backend.name, "data": args.data, **result}, ensure_ascii=False))
    return 0


def run_contamination(args) -> int:
    from core.eval.contamination import contamination_for

    task = _load_task(args, args.task)
    report = contamination_for(task, args.run, args.ngram)
    if not report["checked"]:
        raise CLIError(report["reason"])
    print(f"{task.name}: {report['contaminated']} of {report['items_checked']} checked items share a "
          f"{args.ngram}-gram with the training data ({report['share']:.1%}; {report['items']} items, "
          f"{report['items'] - report['items_checked']} too short to check){'  HIGH' if report['flagged'] else ''}")
    print(f"runs: {', '.join(report['runs'])}")
    print(f"files: {', '.join(report['files']) or 'none'}"
          + (f"; missing: {', '.join(report['missing_files'])}" if report["missing_files"] else ""))
    if args.out:
        ids = [it.id for it in task.items]
        report["item_flags"] = dict(zip(ids, report["item_flags"]))
        Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0
