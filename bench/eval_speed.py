"""Scoring speed on CPU: tokens/s of `minimind eval bench` on torch (fp32 and bf16 weights) and llama.cpp (f32 and
q8_0 GGUFs of the same weights), on the same model and the same items, measured side by side in one run.

    python -m bench.eval_speed              # prints a table (about a minute on 2 shared cores)
    python -m bench.eval_speed --markdown   # the same for docs/benchmarks.md
    python -m bench.eval_speed --preset small --items 16 --rounds 5   # 25.8M params: ~2.5 minutes

The model is the `tiny` preset (the shape `minimind demo` trains) with random weights: speed does not depend on
what they say. The items are the first `items` of the built-in `demo-facts` set, 2 options each, 1-shot
(sequences of ~40 tokens). Torch scores as `eval bench` does for a checkpoint (`TorchScorer`, right-padded batches
of 16); llama.cpp as it does for a GGUF (`BackendScorer` → `LlamaCppBackend.score`: one evaluation per option
that starts where it differs from the previous one, so an item's question is evaluated once).

tokens/s = the tokens `score_task` reports (context + option, every option: the same count for every scorer) /
its wall time. Each round runs every scorer once, the order rotated each round so that none always runs first
while the shared machine's load drifts; a warm-up round is dropped. Reported: median (min-max) tokens/s over the
rounds, and each row's ratio to torch fp32 as the median of the per-round ratios (paired: both from the same
round). `largest score Δ` is the largest difference of an option's score (a sum of log-probs, rounded to 4 decimals
as `score_task` reports it) from torch fp32's, to show the rows compute the same answers.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import export_ggufs

BASE = "torch fp32"


def _round(targets: dict, task, k_shot: int, order: list[str]) -> dict:
    """{name: {"tok_s", "tokens", "scores"}} for one pass over every target, in `order`."""
    from core.eval.bench import score_task

    out = {}
    for name in order:
        started = time.perf_counter()
        result = score_task(targets[name], task, k_shot=k_shot)
        seconds = time.perf_counter() - started
        tokens = result["summary"]["tokens"]
        out[name] = {"tok_s": tokens / seconds, "tokens": tokens,
                     "scores": [s for r in result["items"] for s in r["scores"]]}
    return {name: out[name] for name in targets}  # the table's order, whatever order they ran in


def summarise(rounds: list[dict], base: str = BASE) -> dict:
    """Per target: tok/s median/min/max over `rounds` (`_round`'s results), its paired per-round ratio to
    `base` (median), and the largest score difference from `base` in any round."""
    rows = {}
    for name in rounds[0]:
        speeds = [r[name]["tok_s"] for r in rounds]
        ratios = [r[name]["tok_s"] / r[base]["tok_s"] for r in rounds]
        diff = max(abs(a - b) for r in rounds for a, b in zip(r[name]["scores"], r[base]["scores"]))
        rows[name] = {"tok_s": {"median": statistics.median(speeds), "min": min(speeds), "max": max(speeds)},
                      "ratio": statistics.median(ratios), "ratios": ratios, "max_abs_diff": diff}
    return rows


def _targets(stack: contextlib.ExitStack, model, tok, work: Path, preset: str, qtypes, threads: int) -> dict:
    from core.eval.bench import BackendScorer, TorchScorer
    from core.infer.llamacpp import LlamaCppBackend

    targets = {BASE: TorchScorer(model, tok, "cpu", batch_size=16),
               "torch bf16": TorchScorer(_bf16_copy(model), tok, "cpu", batch_size=16)}
    for qtype, path in export_ggufs(model, tok, work, preset, qtypes).items():
        backend = stack.enter_context(LlamaCppBackend(path, n_ctx=1024, n_threads=threads))
        targets[f"llama.cpp {qtype}"] = BackendScorer(backend)
    return targets


def _bf16_copy(model):
    import copy

    import torch

    return copy.deepcopy(model).to(torch.bfloat16)


def run(preset: str = "tiny", items: int = 40, k_shot: int = 1, rounds: int = 7, threads: int = 1,
        qtypes=("f32", "q8_0")) -> dict:
    """{"preset", "params", "threads", "items", "k_shot", "rounds", "tokens", "rows": summarise(...)}; llama.cpp
    rows are absent (and "llama_cpp" says why) without llama-cpp-python."""
    import torch

    from core.config import get_preset
    from core.eval.bench import load_task
    from core.export.bench import _bench_tokenizer  # the export bench's built-in tokenizer: no datasets needed
    from core.model import MiniMindForCausalLM
    from core.precision import cpu_native_bf16

    torch.set_num_threads(threads)
    task = load_task("demo-facts", limit=items)
    result = {"preset": preset, "threads": threads, "items": items, "k_shot": k_shot, "rounds": rounds,
              "bf16": cpu_native_bf16() or "not native on this CPU (emulated)"}
    with tempfile.TemporaryDirectory(prefix="minimind-bench-eval-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        tok = _bench_tokenizer(work)
        torch.manual_seed(0)
        model = MiniMindForCausalLM(get_preset(preset)).eval()
        result["params"] = model.num_parameters()
        try:
            targets = _targets(stack, model, tok, work, preset, qtypes, threads)
        except ImportError as exc:
            result["llama_cpp"] = f"skipped: {exc}"
            targets = _targets(stack, model, tok, work, preset, (), threads)
        names, measured = list(targets), []
        for i in range(rounds + 1):  # round 0 warms caches and allocators and is dropped
            order = names[i % len(names):] + names[:i % len(names)]
            measured.append(_round(targets, task, k_shot, order))
            speeds = ", ".join(f"{n} {measured[-1][n]['tok_s']:.0f}" for n in names)
            print(f"round {i}{' (warm-up)' if i == 0 else ''}: {speeds} tok/s", file=sys.stderr, flush=True)
    result["rows"] = summarise(measured[1:] or measured)
    result["tokens"] = measured[0][BASE]["tokens"]
    return result


def table(result: dict, markdown: bool = False) -> str:
    title = (f"Scoring speed, preset {result['preset']} ({result['params']:,} params, random init), "
             f"{result['items']} demo-facts items x 2 options ({result['tokens']} tokens), {result['k_shot']}-shot, "
             f"{result['threads']} thread(s), median (min-max) of {result['rounds']} interleaved rounds")
    head = ["scorer", "tok/s", "x torch fp32 (paired)", "largest score Δ vs torch fp32"]
    body = [[name, f"{r['tok_s']['median']:.0f} ({r['tok_s']['min']:.0f}-{r['tok_s']['max']:.0f})",
             f"{r['ratio']:.2f}", f"{r['max_abs_diff']:.4f}"] for name, r in result["rows"].items()]
    if markdown:
        lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        lines = [title] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + body]
    lines.append(f"torch bf16: {result['bf16']}")
    if "llama_cpp" in result:
        lines.append(f"llama.cpp {result['llama_cpp']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds after one warm-up round")
    parser.add_argument("--threads", type=int, default=1, help="torch and llama.cpp threads (default 1: the "
                        "machine the docs' figures come from has 2 shared cores)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(table(run(args.preset, args.items, args.k_shot, args.rounds, args.threads), markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
