"""Server concurrency: N streaming clients at once against `minimind serve`'s server, batched vs one at a time.

    python -m bench.serve_concurrency              # 32 clients, small preset, prints a table
    python -m bench.serve_concurrency --markdown   # the same as Markdown (docs/benchmarks.md)

A real server (core.serve.make_server on 127.0.0.1, uvicorn) over a `small`-preset checkpoint with random weights
(speed does not depend on what the weights say). Every client is the official `openai` client on its own thread,
sending one streamed chat request at the same moment (a barrier), each with its own prompt, `max_tokens` new
tokens and the end-of-sequence stop disabled (`ignore_eos`), so every request does the same amount of
work. Latency = request sent -> `[DONE]`; time to first token = request sent -> first
content, reasoning or tool-call delta. Run once with
the dynamic batcher (max_batch = N) and once with max_batch = 1 (requests queue, one at a time, as llama.cpp
models are served), after one warm-up request each.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _clients(server, n: int, max_tokens: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=600)
    name = server.backend.name
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def one(i: int):
        barrier.wait()
        t0 = time.perf_counter()
        first, pieces = None, 0
        try:
            for chunk in client.chat.completions.create(
                    model=name, stream=True, max_tokens=max_tokens, temperature=0.8, seed=i,
                    messages=[{"role": "user", "content": f"Question {i}: tell me about the number {i}."}],
                    extra_body={"ignore_eos": True}):
                delta = chunk.choices[0].delta if chunk.choices else None
                # first token of any kind: a random model may open a <think> block (reasoning, not content)
                if delta and (delta.content or (delta.model_extra or {}).get("reasoning_content") or delta.tool_calls):
                    first = first or time.perf_counter()
                    pieces += 1
            results[i] = (time.perf_counter() - t0, (first or time.perf_counter()) - t0)
        except Exception as exc:  # reported, and the run counts as failed
            errors.append(f"client {i}: {exc}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done = [r for r in results if r is not None]
    latency, ttft = [r[0] for r in done], [r[1] for r in done]
    return {"clients": n, "completed": len(done), "errors": errors[:3], "wall_s": round(wall, 2),
            "p50_s": round(statistics.median(latency), 2), "p95_s": round(_percentile(latency, 0.95), 2),
            "ttft_p50_s": round(statistics.median(ttft), 2), "ttft_p95_s": round(_percentile(ttft, 0.95), 2),
            "tokens_per_s": round(len(done) * max_tokens / wall, 1),
            "largest_batch": server.engine.largest_batch}


def run(preset: str = "small", clients: int = 32, max_tokens: int = 64, threads: int | None = None) -> dict:
    import torch

    from core.config import get_preset
    from core.export.bench import _bench_tokenizer  # a built-in tokenizer: no datasets needed
    from core.infer.backend import TorchBackend
    from core.model import MiniMindForCausalLM
    from core.model.io import save_checkpoint
    from core.serve import make_server

    if threads:
        torch.set_num_threads(threads)
    out = {"preset": preset, "clients": clients, "max_tokens": max_tokens, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tok = _bench_tokenizer(work)
        torch.manual_seed(0)
        ckpt = save_checkpoint(MiniMindForCausalLM(get_preset(preset)).eval(), work / "ckpt", tok)
        backend = TorchBackend(ckpt)
        for label, max_batch in (("batched", clients), ("one_at_a_time", 1)):
            server = make_server(backend, "127.0.0.1", 0, max_batch=max_batch)
            server.start_background()
            try:
                _clients(server, 1, 4)  # warm-up
                server.engine.largest_batch = 0
                out[label] = _clients(server, clients, max_tokens)
            finally:
                server.shutdown()
                server.server_close()
        backend.close()
    return out


def table(result: dict, markdown: bool = False) -> str:
    cols = ["completed", "wall_s", "p50_s", "p95_s", "ttft_p50_s", "ttft_p95_s", "tokens_per_s", "largest_batch"]
    rows = [[label] + [str(result[label][c]) for c in cols] for label in ("batched", "one_at_a_time")]
    head = ["server"] + cols
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(r) + " |" for r in rows])
    return "\n".join("  ".join(f"{c:>14}" for c in r) for r in [head] + rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.preset, args.clients, args.max_tokens, args.threads)
    print(result)
    print(table(result, args.markdown))


if __name__ == "__main__":
    main()
