"""Benchmark scoring speed on CPU: tokens/s of `minimind eval bench` on torch (batched and one sequence at a
time) and llama.cpp (f32 and q8_0 GGUFs through Backend.score), on the same `small` model and the same items.

    python -m bench.eval_speed --threads 1            # prints a table
    python -m bench.eval_speed --threads 1 --markdown # the same for docs/benchmarks.md

The model is the `small` preset (25.8M params) with random weights (speed does not depend on what they say);
the items are the first `items` of the built-in `demo-facts` set, 2 options each, 1-shot (sequences of ~40
tokens). tokens/s = tokens put through the model (context + option, every option) / wall time of
`score_task`. Best of `repeats` runs after one warm-up run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import gguf_backends


def _measure(target, task, repeats: int, **options) -> dict:
    from core.eval.bench import score_task

    runs = []
    for _ in range(repeats + 1):  # the first run warms caches and allocators and is dropped
        started = time.perf_counter()
        s = score_task(target, task, **options)["summary"]
        runs.append({"tok_s": s["tokens"] / (time.perf_counter() - started), "tokens": s["tokens"]})
    best = max(runs[1:] or runs, key=lambda r: r["tok_s"])
    print(f"{target!r}: {best['tok_s']:.0f} tok/s", file=sys.stderr, flush=True)  # a row as soon as it is known
    return {"tok_s": round(best["tok_s"], 1), "tokens": best["tokens"]}


def run(preset: str = "small", items: int = 12, k_shot: int = 1, repeats: int = 1, threads: int | None = None,
        qtypes=("f32", "q8_0")) -> dict:
    import torch

    from core.config import get_preset
    from core.eval.bench import BackendScorer, TorchScorer, load_task
    from core.export.bench import _bench_tokenizer  # the export bench's built-in tokenizer: no datasets needed
    from core.model import MiniMindForCausalLM

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    task = load_task("demo-facts", limit=items)
    result = {"preset": preset, "threads": threads, "items": items, "k_shot": k_shot, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="minimind-bench-eval-") as tmp:
        work = Path(tmp)
        tok = _bench_tokenizer(work)
        torch.manual_seed(0)
        model = MiniMindForCausalLM(get_preset(preset)).eval()
        result["params"] = model.num_parameters()
        for batch in (16, 1):
            scorer = TorchScorer(model, tok, "cpu", batch_size=batch)
            result["rows"][f"torch f32, batch {batch}"] = _measure(scorer, task, repeats, k_shot=k_shot,
                                                                   batch_size=batch)
        try:
            for qtype, backend in gguf_backends(model, tok, work, preset, qtypes, 1024, threads):
                result["rows"][f"llama.cpp {qtype} (Backend.score)"] = _measure(BackendScorer(backend), task,
                                                                                repeats, k_shot=k_shot)
        except ImportError as exc:
            result["llama_cpp"] = f"skipped: {exc}"
    return result


def table(result: dict, markdown: bool = False) -> str:
    rows = list(result["rows"].items())
    base = rows[0][1]["tok_s"]
    title = (f"Scoring speed, preset {result['preset']} ({result['params']:,} params, random init), "
             f"{result['items']} demo-facts items x 2 options, {result['k_shot']}-shot, {result['threads']} threads")
    head = ["scorer", "tok/s", "x torch batch 16", "tokens"]
    body = [[name, f"{r['tok_s']:.0f}", f"{r['tok_s'] / base:.2f}", str(r["tokens"])] for name, r in rows]
    if markdown:
        lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        lines = [title] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + body]
    if "llama_cpp" in result:
        lines.append(f"llama.cpp {result['llama_cpp']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--items", type=int, default=12)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(table(run(args.preset, args.items, args.k_shot, args.repeats, args.threads), markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
