"""`minimind eval tools`: tool-use evaluation of a checkpoint, a GGUF or an OpenAI-compatible endpoint
(core/eval/tool_use.py). Registered under `minimind eval` by core.cli.infer_cmd."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from core.cli import CLIError


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
    tools.add_argument("--api-model", default="minimind", help="model name sent to the endpoint")
    tools.add_argument("--cases", metavar="F.jsonl", help="agent-task JSONL (conversations with tools + gt); "
                       "default: the 20 built-in cases")
    tools.add_argument("--max-turns", type=int, default=3, help="answers per case (default 3)")
    tools.add_argument("--max-new-tokens", type=int, default=256, help="tokens per answer (default 256)")
    tools.add_argument("--no-baseline", action="store_true", help="skip answering each case without tools")
    tools.add_argument("--device", default="cpu", help="torch device for checkpoints")
    tools.add_argument("--out", metavar="F.json", help="write the per-case results and the summary as JSON")
    tools.set_defaults(func=run_tools)


def _target(args):
    from core.eval.tool_use import BackendTarget, EndpointTarget

    if args.endpoint:
        return EndpointTarget(args.endpoint, args.api_model, max_new_tokens=args.max_new_tokens), None
    from core.infer.backend import open_backend

    try:
        backend = open_backend(Path(args.model), device=args.device)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    return BackendTarget(backend, args.max_new_tokens), backend


def run_tools(args) -> int:
    from core.data import DataError
    from core.eval.tool_use import builtin_cases, evaluate_tool_use, load_cases

    try:
        cases = load_cases(args.cases) if args.cases else builtin_cases()
    except (DataError, OSError) as exc:
        raise CLIError(str(exc)) from None
    target, backend = _target(args)
    progress = (lambda i, n: print(f"\r{i}/{n} cases", end="", file=sys.stderr, flush=True))
    try:
        result = evaluate_tool_use(target, cases, args.max_turns, args.max_new_tokens,
                                   without_tools=not args.no_baseline, progress=progress)
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
    print(f"{'total':<12} {s['well_formed']:>11.0%} {s['right_tool']:>10.0%} {s['valid_arguments']:>10.0%} "
          f"{s['correct']:>8.0%} {s['mean_turns']:>5.2f}")
    if s["correct_without_tools"] is not None:
        print(f"correct without tools: {s['correct_without_tools']:.0%} of {s['cases']} cases")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0
