"""`minimind chat` (interactive, streaming) and `minimind eval` (prompts -> JSONL, speed, perplexity).

--model takes a checkpoint dir, a run dir (its latest checkpoint) or a .gguf file (llama.cpp).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.cli import CLIError

# A few of MiniMind's eval_llm.py prompts (Chinese and English) for `minimind eval` without --prompts-file.
DEFAULT_PROMPTS = [
    "你有什么特长？",
    "为什么天空是蓝色的",
    "请用Python写一个计算斐波那契数列的函数",
    "解释一下\"光合作用\"的基本过程",
    "Introduce yourself in one sentence.",
]


def add_model_args(parser) -> None:
    parser.add_argument("--model", required=True, metavar="PATH",
                        help="checkpoint dir, run dir (latest checkpoint) or .gguf file")
    parser.add_argument("--device", default="cpu", help="torch device for checkpoints (cpu, cuda, cuda:1, mps)")
    parser.add_argument("--rope-scaling", action="store_true",
                        help="YaRN context extension (the config's rope_scaling; torch checkpoints only)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context size (default 4096)")


def add_sampling_args(parser, temperature: float = 0.85) -> None:
    g = parser.add_argument_group("sampling")
    g.add_argument("--max-new-tokens", type=int, default=512, help="tokens to generate at most (default 512)")
    g.add_argument("--temperature", type=float, default=temperature, help=f"0 = greedy (default {temperature})")
    g.add_argument("--top-k", type=int, default=50, help="0 = off (default 50)")
    g.add_argument("--top-p", type=float, default=0.85, help="nucleus mass, 1 = off (default 0.85)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="1 = off (default 1.0)")
    g.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop string (repeatable)")
    g.add_argument("--seed", type=int, default=None, help="make sampling reproducible")


def sampling_from_args(args):
    from pydantic import ValidationError

    from core.infer.sampling import SamplingParams

    try:
        return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                              top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=args.stop,
                              seed=args.seed)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise CLIError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None


def open_backend_from_args(args, dtype: str | None = None):
    """The backend `--model` names. `dtype="auto"` (chat, serve): bf16 weights on CPUs with native bf16 when the
    greedy output is unchanged (core.infer.backend); measurement commands keep fp32."""
    from core.infer.backend import open_backend

    path = Path(args.model)
    options = {"n_ctx": args.n_ctx} if path.suffix.lower() == ".gguf" else {"rope_scaling": args.rope_scaling,
                                                                             "dtype": dtype}
    if path.suffix.lower() == ".gguf" and args.rope_scaling:
        raise CLIError("--rope-scaling applies to torch checkpoints; a GGUF carries its own rope settings")
    try:
        return open_backend(path, device=args.device, **options)
    except (FileNotFoundError, RuntimeError, ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None
    except Exception as exc:  # CheckpointError and friends: already worded for people
        if type(exc).__name__ == "CheckpointError":
            raise CLIError(str(exc)) from None
        raise


def register(subparsers) -> None:
    chat = subparsers.add_parser("chat", help="chat with a model in the terminal (streaming)",
                                 description="Type a message and press Enter. Commands: /reset (forget the "
                                             "conversation), /system TEXT (set the system prompt), /quit.")
    add_model_args(chat)
    add_sampling_args(chat)
    chat.add_argument("--system", default=None, help="system prompt (default: the template's)")
    chat.add_argument("--show-speed", action="store_true", help="print tokens/s after each answer (stderr)")
    chat.add_argument("--think", action=argparse.BooleanOptionalAction, default=None,
                      help="open (--think) or skip (--no-think) the reasoning block; default: the template's. "
                           "Reasoning is shown dimmed on stderr")
    chat.add_argument("--tools", default=None, metavar="NAMES",
                      help="offer built-in tools and run the calls automatically: 'all' or a comma list of "
                           "calculate_math, unit_converter, get_current_time")
    chat.add_argument("--constrain", action=argparse.BooleanOptionalAction, default=True,
                      help="with --tools: calls may name only the offered tools, with arguments valid for their "
                           "schemas, enforced while decoding (default on; --no-constrain lets the model write freely)")
    chat.add_argument("--max-tool-rounds", type=int, default=4,
                      help="answers that may call tools before the model must reply (default 4)")
    chat.set_defaults(func=_chat)

    ev = subparsers.add_parser("eval", help="answer a prompt set and measure speed and perplexity")
    add_model_args(ev)
    add_sampling_args(ev, temperature=0.0)
    ev.add_argument("--prompts-file", metavar="F.jsonl",
                    help='one prompt per line: {"prompt": ...} or {"messages"|"conversations": [...]}')
    ev.add_argument("--raw", action="store_true", help="complete prompts as plain text instead of chat turns")
    ev.add_argument("--ppl-data", metavar="F.jsonl", help='texts for perplexity: {"text": ...} per line')
    ev.add_argument("--ppl-max-tokens", type=int, default=512, help="truncate each text to this many tokens")
    ev.add_argument("--limit", type=int, default=None, help="use at most N prompts / N perplexity texts")
    ev.add_argument("--out", metavar="F.jsonl", help="write one JSON line per prompt, then a summary line")
    ev.set_defaults(func=_eval)
    from core.cli.eval_cmd import add_eval_subcommands

    add_eval_subcommands(ev)  # minimind eval tools


# ---------------------------------------------------------------------------------------------- chat
def _tool_registry(spec: str | None):
    """(registry, tool schemas) for --tools; (None, None) without it."""
    if not spec:
        return None, None
    from core.tools import builtin_registry

    registry = builtin_registry()
    names = registry.names() if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in registry.names()]
    if unknown:
        raise CLIError(f"--tools: unknown tool(s) {', '.join(unknown)}; choose from {', '.join(registry.names())} "
                       "or 'all'")
    return registry, registry.schemas(names)


def _chat(args) -> int:
    sampling = sampling_from_args(args)
    registry, tools = _tool_registry(args.tools)
    backend = open_backend_from_args(args, dtype="auto")
    interactive = sys.stdin.isatty()
    system = args.system
    history: list[dict] = []
    if interactive:
        print(f"{backend.name} ({type(backend).__name__}) — /reset, /system TEXT, /quit", file=sys.stderr)
    try:
        while True:
            if interactive:
                print("\n> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line:
                return 0
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            if text.startswith("/"):
                command, _, rest = text.partition(" ")
                if command == "/quit":
                    return 0
                if command == "/reset":
                    history.clear()
                    print("[conversation cleared]", file=sys.stderr)
                elif command == "/system":
                    system = rest.strip() or None
                    history.clear()
                    print(f"[system prompt {'set' if system else 'reset to the default'}; conversation cleared]",
                          file=sys.stderr)
                else:
                    print(f"[unknown command {command}; use /reset, /system TEXT or /quit]", file=sys.stderr)
                continue
            history.append({"role": "user", "content": text})
            for _round in range(max(1, args.max_tool_rounds + 1)):
                answer = _answer(backend, system, history, sampling, tools, args.think, args.constrain)
                history.append(answer.assistant_message())
                if not (answer.tool_calls and registry) or _round == args.max_tool_rounds:
                    break
                for message in registry.answer(answer.tool_calls):
                    print(f"[tool result] {message['content']}", file=sys.stderr)
                    history.append(message)
            if args.show_speed:
                u = backend.usage
                rate = u.completion_tokens / u.decode_s if u.decode_s > 0 else 0.0
                print(f"[{u.prompt_tokens} prompt + {u.completion_tokens} completion tokens, {rate:.1f} tokens/s]",
                      file=sys.stderr)
    finally:
        backend.close()


def _answer(backend, system, history: list[dict], sampling, tools=None, think=None, constrain: bool = False):
    """Stream one answer: content on stdout, reasoning (dimmed on a terminal) and tool calls on stderr; with tools
    and `constrain`, decoded under tool_choice "auto". Returns the parsed answer (core.infer.chat_output.ChatOutput)."""
    from core.infer.answer_format import AnswerFormat
    from core.infer.chat_output import ChatOutput

    messages = ([{"role": "system", "content": system}] if system else []) + history
    # Drop the oldest exchanges while the prompt leaves no room for an answer.
    while len(history) > 1 and len(backend.tokenize(backend.render_chat(messages, tools, think))) + 16 > \
            backend.max_context:
        del history[:2]
        messages = ([{"role": "system", "content": system}] if system else []) + history
    dim, plain = ("\033[2m", "\033[0m") if sys.stderr.isatty() else ("", "")
    answer = ChatOutput()
    try:
        fmt = AnswerFormat.from_openai(tools) if tools and constrain else None
        for delta in backend.chat_events(messages, sampling, tools, think, fmt):
            answer.add(delta)
            if delta.kind == "content":
                sys.stdout.write(delta.text)
                sys.stdout.flush()
            elif delta.kind == "reasoning":
                sys.stderr.write(dim + delta.text + plain)
                sys.stderr.flush()
            else:
                print(f"[tool call] {delta.call.name}({delta.call.arguments})", file=sys.stderr, flush=True)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if answer.reasoning:
        sys.stderr.write("\n")
    sys.stdout.write("\n")
    sys.stdout.flush()
    return answer


# ---------------------------------------------------------------------------------------------- eval
def _read_jsonl(path: str, limit: int | None):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append((lineno, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise CLIError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
                if limit and len(rows) >= limit:
                    break
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    return rows


def _prompt_messages(path: str, lineno: int, row) -> tuple[str, list[dict] | None]:
    """(display prompt, chat messages or None for a plain-text prompt)."""
    if isinstance(row, dict):
        turns = row.get("messages", row.get("conversations"))
        if isinstance(turns, list) and turns and all(isinstance(t, dict) and "role" in t for t in turns):
            if turns[-1]["role"] == "assistant":  # SFT/RL records: answer the conversation before the reply
                turns = turns[:-1]
            if turns:
                return str(turns[-1].get("content", "")), [{"role": t["role"], "content": t.get("content") or ""}
                                                           for t in turns]
        if isinstance(row.get("prompt"), str):
            return row["prompt"], None
    raise CLIError(f"{path}:{lineno}: expected a \"prompt\" string or a \"messages\"/\"conversations\" list "
                   "of {role, content}")


def _eval(args) -> int:
    from core.infer.perplexity import perplexity

    sampling = sampling_from_args(args)
    if args.prompts_file:
        prompts = [_prompt_messages(args.prompts_file, n, r) for n, r in _read_jsonl(args.prompts_file, args.limit)]
    else:
        prompts = [(p, None) for p in DEFAULT_PROMPTS[:args.limit]]
    texts = []
    if args.ppl_data:
        for lineno, row in _read_jsonl(args.ppl_data, args.limit):
            if not (isinstance(row, dict) and isinstance(row.get("text"), str)):
                raise CLIError(f"{args.ppl_data}:{lineno}: text: expected a string field \"text\"")
            texts.append(row["text"])
    backend = open_backend_from_args(args)
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    try:
        rows = []
        for prompt, messages in prompts:
            if messages is None and not args.raw:
                messages = [{"role": "user", "content": prompt}]
            started = time.perf_counter()
            stream = backend.chat_stream(messages, sampling) if messages else backend.complete_stream(prompt, sampling)
            completion = "".join(stream)
            u = backend.usage
            row = {"prompt": prompt, "completion": completion, "finish_reason": backend.finish_reason,
                   "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                   "seconds": round(time.perf_counter() - started, 4),
                   "prompt_tokens_per_s": round(u.prompt_tokens / u.prefill_s, 2) if u.prefill_s else None,
                   "tokens_per_s": round(u.completion_tokens / u.decode_s, 2)
                   if u.decode_s > 0 else None}
            rows.append(row)
            print(f"### {prompt}\n{completion}\n[{row['completion_tokens']} tokens, {row['tokens_per_s']} tokens/s]\n")
            if out:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        summary = {"summary": True, "model": backend.name, "backend": type(backend).__name__,
                   "prompts": len(rows)}
        rates = [r["tokens_per_s"] for r in rows if r["tokens_per_s"]]
        summary["mean_tokens_per_s"] = round(sum(rates) / len(rates), 2) if rates else None
        if texts:
            try:
                summary.update(perplexity(backend, texts, args.ppl_max_tokens))
            except ValueError as exc:
                raise CLIError(f"--ppl-data: {exc}") from None
        print(json.dumps(summary, ensure_ascii=False))
        if out:
            out.write(json.dumps(summary, ensure_ascii=False) + "\n")
    finally:
        if out:
            out.close()
        backend.close()
    return 0
