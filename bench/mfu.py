"""Model FLOPs utilisation against a peak measured on this machine, in the precision being trained.

    python -m bench.mfu --preset small      # the measured matmul peak per precision on this machine
    python -m bench.mfu --preset small --ceiling --precisions bf16 --threads 1
                                            # the most MFU a step can reach when only its matmuls took time

FLOPs per trained token (PaLM, Chowdhery et al. 2022, appendix B): 6·N for the weight matmuls (2·N forward,
4·N backward), with N the *active* parameters (an MoE token runs top-k of its routed experts), plus attention's
score and value matmuls, 12·L·H·D·T in PaLM's count; with a causal mask only half of the T×T score matrix is
needed (and flash attention computes only that half), so this counts 6·L·H·D·T, where T is the sequence length.

The peak is not a data-sheet figure: it is the best rate of the model's dominant matmul shape, the FFN's
(B·T × hidden) @ (hidden × intermediate), in the precision being measured, timed here and now. A CPU's
throughput depends on its vector units (AVX-512, AMX), its clocks and the load on a shared machine; the same
matmul timed in the same minutes is the fairest ceiling. MFU = FLOPs per token × tokens/s / that peak.
"""
from __future__ import annotations

import argparse
import time

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def train_flops_per_token(model_config, seq_len: int) -> float:
    """6·N_active + 6·L·H·D·T (causal attention), the FLOPs of one trained token."""
    import torch

    from core.model import MiniMindForCausalLM

    with torch.device("meta"):
        active = MiniMindForCausalLM(model_config).num_active_parameters()
    c = model_config
    return 6.0 * active + 6.0 * c.num_hidden_layers * c.num_attention_heads * c.resolved_head_dim * seq_len


def matmul_peak(device: str, precision: str, rows: int, hidden: int, inner: int, seconds: float = 1.0) -> float:
    """The best FLOP/s of a (rows × hidden) @ (hidden × inner) matmul in `precision` on `device`, over repeated
    timings for about `seconds`."""
    import torch

    dtype = getattr(torch, DTYPES[precision])
    a = torch.randn(rows, hidden, device=device).to(dtype)
    b = torch.randn(hidden, inner, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    flops = 2.0 * rows * hidden * inner
    for _ in range(3):  # warm-up: oneDNN/cuBLAS pick and cache their kernels
        a @ b
    sync()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        sync()
        best = max(best, 4 * flops / (time.perf_counter() - t0))
    return best


def model_peak(model_config, batch_size: int, seq_len: int, device: str, precision: str) -> float:
    """matmul_peak of the model's FFN shape at this batch (rows capped at 4096: the rate has flattened by then)."""
    c = model_config
    inner = c.resolved_moe_intermediate_size if c.use_moe else c.resolved_intermediate_size
    return matmul_peak(device, precision, min(batch_size * seq_len, 4096), c.hidden_size, inner)


def linear_shapes(model_config) -> list[tuple[str, int, int, int]]:
    """(name, in features K, out features N, count per step) of every weight matmul of a dense model's step."""
    c = model_config
    if c.use_moe:
        raise ValueError("the matmul ceiling covers dense presets only (an MoE step's expert matmuls have "
                         "data-dependent shapes)")
    d, h, kv, ffn = c.hidden_size, c.num_attention_heads * c.resolved_head_dim, \
        c.num_key_value_heads * c.resolved_head_dim, c.resolved_intermediate_size
    layers = c.num_hidden_layers
    shapes = [("q, o", d, h, 2 * layers)] if h == d else [("q", d, h, layers), ("o", h, d, layers)]
    return shapes + [("k, v", d, kv, 2 * layers), ("gate, up", d, ffn, 2 * layers), ("down", ffn, d, layers),
                     ("lm head", d, c.vocab_size, 1)]


def _best_seconds(fn, repeats: int = 6) -> float:
    for _ in range(2):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_ceiling(model_config, batch_size: int, seq_len: int, precision: str) -> dict:
    """Time every weight matmul of one training step (forward x @ W^T, input gradient g @ W, weight gradient
    g^T @ x, in the layouts autograd uses) at the step's shapes, on CPU; the attention matmuls counted at the
    peak. The step can be no faster than their sum, so FLOPs per step / that sum / peak is the most MFU any
    implementation calling these kernels can reach. Also the weight gradient with g^T made contiguous first."""
    import torch

    dtype = getattr(torch, DTYPES[precision])
    rows = batch_size * seq_len
    peak = model_peak(model_config, batch_size, seq_len, "cpu", precision)
    parts, total, total_contig = [], 0.0, 0.0
    for name, k, n, count in linear_shapes(model_config):
        x, w, g = (torch.randn(rows, k).to(dtype), torch.randn(n, k).to(dtype), torch.randn(rows, n).to(dtype))
        gt = g.t().contiguous()
        flops = 2.0 * rows * k * n
        times = {"forward": _best_seconds(lambda: x @ w.t()), "input grad": _best_seconds(lambda: g @ w),
                 "weight grad": _best_seconds(lambda: g.t() @ x),
                 "weight grad, g^T contiguous": _best_seconds(lambda: gt @ x)}
        rates = {key: flops / t / 1e9 for key, t in times.items()}
        step = count * (times["forward"] + times["input grad"] + times["weight grad"])
        total += step
        total_contig += count * (times["forward"] + times["input grad"] + times["weight grad, g^T contiguous"])
        parts.append({"matmul": name, "shape": f"{rows}x{k} . {k}x{n}", "per_step": count,
                      "gflops": {key: round(r) for key, r in rates.items()}, "step_ms": round(step * 1000, 1)})
    c = model_config
    attn_flops = 6.0 * c.num_hidden_layers * c.num_attention_heads * c.resolved_head_dim * seq_len * rows
    step_flops = train_flops_per_token(model_config, seq_len) * rows
    attn_s = attn_flops / peak
    return {"precision": precision, "rows": rows, "peak_gflops": round(peak / 1e9), "parts": parts,
            "matmul_ms": round((total + attn_s) * 1000, 1),
            "ceiling_mfu": step_flops / (total + attn_s) / peak,
            "ceiling_mfu_contiguous_grad": step_flops / (total_contig + attn_s) / peak}


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    return flops_per_token * tokens_per_s / peak if peak else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=340)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--ceiling", action="store_true",
                   help="time every weight matmul of a step at its shapes: the most MFU reachable (CPU)")
    p.add_argument("--threads", type=int, help="intra-op threads (the throughput bench uses 1)")
    a = p.parse_args(argv)
    from core.config import get_preset

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    cfg = get_preset(a.preset, vocab_size=6400)
    if a.ceiling:
        for precision in a.precisions.split(","):
            result = matmul_ceiling(cfg, a.batch_size, a.seq_len, precision)
            print(f"{a.preset}, {precision}, batch {a.batch_size} x {a.seq_len}: peak {result['peak_gflops']} GFLOP/s "
                  "(FFN-shaped matmul, measured now)")
            print("| matmul | shape | per step | forward | input grad | weight grad | weight grad, g^T contiguous "
                  "| ms per step |")
            print("|---|---|---|---|---|---|---|---|")
            for part in result["parts"]:
                r = part["gflops"]
                print(f"| {part['matmul']} | {part['shape']} | {part['per_step']} | {r['forward']} | "
                      f"{r['input grad']} | {r['weight grad']} | {r['weight grad, g^T contiguous']} | "
                      f"{part['step_ms']} |")
            print(f"matmuls alone (attention's at the peak): {result['matmul_ms']} ms per step -> MFU ceiling "
                  f"{result['ceiling_mfu']:.0%}; with contiguous g^T for the weight gradients "
                  f"{result['ceiling_mfu_contiguous_grad']:.0%} (GFLOP/s in the table)")
        return 0
    print(f"{a.preset}: {train_flops_per_token(cfg, a.seq_len) / 1e6:.1f} MFLOP per trained token at T={a.seq_len}")
    for precision in a.precisions.split(","):
        peak = model_peak(cfg, a.batch_size, a.seq_len, a.device, precision)
        print(f"{precision}: measured matmul peak {peak / 1e9:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
