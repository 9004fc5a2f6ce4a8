"""Inference speed: torch backend vs llama.cpp (f32, f16, q8_0) on the same `small` model, side by side.

    python -m bench.infer_speed            # prints a table
    python -m bench.infer_speed --markdown # the same as a Markdown table (docs/benchmarks.md)

Torch runs with fp32 weights and with bf16 weights (the same checkpoint cast at load).
The model is the `small` preset (MiniMind2-Small shape, 25.8M params) with random weights: speed does not
depend on what the weights say. Every backend gets the same prompt ids and greedy-decodes the same number of
tokens with stops disabled, through the same `decode_loop` (our sampling + detokenization), so the figures
compare the engines, not different amounts of work. Prompt speed = prompt tokens / prefill time; decode
speed = generated tokens / time from the first sampled token to the last. Best of `repeats` runs.
Also measured: `generate_batch` throughput (the RL rollout path) at batch 8.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import gguf_backends

PROMPT_TOKENS = 128
DECODE_TOKENS = 64
QTYPES = ("f32", "f16", "q8_0")


def _measure(backend, prompt_ids: list[int], repeats: int) -> dict:
    from core.infer.sampling import SamplingParams

    params = SamplingParams.greedy_params(DECODE_TOKENS, stop_token_ids=[])
    runs = []
    for _ in range(repeats + 1):  # the first run warms caches and allocators and is dropped
        "".join(backend.stream_ids(prompt_ids, params))
        u = backend.usage
        runs.append({"prompt_tok_s": u.prompt_tokens / u.prefill_s, "decode_tok_s": u.completion_tokens / u.decode_s})
    runs = runs[1:] or runs
    best = {k: max(r[k] for r in runs) for k in runs[0]}
    return {k: round(v, 1) for k, v in best.items()}


def _batched(model, prompt_ids: list[int], batch: int = 8) -> dict:
    from core.infer.generate import generate_batch
    from core.infer.sampling import SamplingParams

    params = SamplingParams(max_new_tokens=DECODE_TOKENS, temperature=1.0, top_p=1.0, top_k=0, seed=0,
                            stop_token_ids=[])
    prompts = [prompt_ids[: PROMPT_TOKENS // 2 + 8 * i] for i in range(batch)]  # ragged: exercises left padding
    generate_batch(model, prompts[:2], params.model_copy(update={"max_new_tokens": 4}))  # warm-up
    t0 = time.perf_counter()
    out = generate_batch(model, prompts, params)
    seconds = time.perf_counter() - t0
    return {"batch": batch, "tok_s": round(sum(map(len, out.sequences)) / seconds, 1)}


def run(preset: str = "small", repeats: int = 2, qtypes=QTYPES, threads: int | None = None) -> dict:
    """{"preset", "params", "threads", "rows": {name: {prompt_tok_s, decode_tok_s}}, "batched": {...}}."""
    import torch

    from core.config import get_preset
    from core.export.bench import _bench_tokenizer  # the export bench's built-in tokenizer: no datasets needed
    from core.infer.backend import TorchBackend
    from core.model import MiniMindForCausalLM
    from core.model.io import save_checkpoint

    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    result = {"preset": preset, "threads": threads, "prompt_tokens": PROMPT_TOKENS,
              "decode_tokens": DECODE_TOKENS, "rows": {}}
    with tempfile.TemporaryDirectory(prefix="minimind-bench-infer-") as tmp:
        work = Path(tmp)
        tok = _bench_tokenizer(work)
        torch.manual_seed(0)
        model = MiniMindForCausalLM(get_preset(preset)).eval()
        result["params"] = model.num_parameters()
        ckpt = save_checkpoint(model, work / "ckpt", tok)
        gen = torch.Generator().manual_seed(0)
        prompt_ids = torch.randint(5, tok.vocab_size, (PROMPT_TOKENS,), generator=gen).tolist()

        torch_backend = TorchBackend(ckpt)
        result["rows"]["torch f32"] = _measure(torch_backend, prompt_ids, repeats)
        result["batched"] = _batched(torch_backend.model, prompt_ids)
        torch_backend.close()
        bf16 = TorchBackend(ckpt, dtype=torch.bfloat16)  # the weights in bf16 (AVX512-BF16/AMX CPUs compute it)
        result["rows"]["torch bf16"] = _measure(bf16, prompt_ids, repeats)
        bf16.close()
        try:
            for qtype, backend in gguf_backends(model, tok, work, preset, qtypes, 512, threads):
                result["rows"][f"llama.cpp {qtype}"] = _measure(backend, prompt_ids, repeats)
        except ImportError as exc:
            result["llama_cpp"] = f"skipped: {exc}"
    return result


def table(result: dict, markdown: bool = False) -> str:
    base = result["rows"]["torch f32"]
    head = ["backend", "prompt tok/s", "decode tok/s", "prompt ×torch", "decode ×torch"]
    rows = [[name, f"{r['prompt_tok_s']:.0f}", f"{r['decode_tok_s']:.1f}",
             f"{r['prompt_tok_s'] / base['prompt_tok_s']:.2f}", f"{r['decode_tok_s'] / base['decode_tok_s']:.2f}"]
            for name, r in result["rows"].items()]
    title = (f"Inference speed, preset {result['preset']} ({result['params']:,} params, random init), "
             f"{result['prompt_tokens']}-token prompt, {result['decode_tokens']} greedy tokens, "
             f"{result['threads']} threads")
    if markdown:
        lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(head, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    b = result.get("batched")
    if b:
        lines.append("")
        lines.append(f"generate_batch (torch, batch {b['batch']}, sampling, ragged prompts): {b['tok_s']:.0f} "
                     "generated tok/s in all")
    if "llama_cpp" in result:
        lines.append(f"llama.cpp {result['llama_cpp']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    print(table(run(args.preset, args.repeats, threads=args.threads), markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
