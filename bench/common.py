"""What every benchmark report needs: the machine it ran on, and model FLOPs utilisation.

MFU follows the PaLM paper's definition (Chowdhery et al. 2022, appendix B): a dense decoder's training step
costs about 6·N FLOPs per token (2·N forward, 4·N backward; attention's extra term left out, as there), so
MFU = 6·N·tokens_per_s / peak_flops.
"""
from __future__ import annotations

import os
import platform
import time

from core.train.calibration import cpu_model  # the one reader of the CPU's model name (calibration keys use it)

# Dense (no sparsity) tensor-core peaks from the vendors' data sheets, FLOP/s.
PEAK_FLOPS = {
    "H100": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},    # H100 SXM5 data sheet
    "H200": {"bf16": 989e12, "fp16": 989e12, "fp32": 67e12},    # same GH100 compute as the H100 SXM
    "A100": {"bf16": 312e12, "fp16": 312e12, "fp32": 19.5e12},  # A100 SXM4 data sheet
}


def gpu_peak_flops(device_name: str, precision: str) -> float | None:
    """The peak for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or None when the card is not listed."""
    for key, peaks in PEAK_FLOPS.items():
        if key in device_name.upper():
            return peaks.get(precision)
    return None


def mfu(params: int, tokens_per_s: float, peak_flops: float | None) -> float | None:
    """Model FLOPs utilisation: 6·N·tokens/s over the peak (None without a known peak)."""
    if not peak_flops:
        return None
    return 6.0 * params * tokens_per_s / peak_flops


def machine_info() -> dict:
    """CPU model, cores, load, Python, torch, llama-cpp-python versions and the GPU if torch sees one."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(terse=True), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        info["load_average"] = [round(x, 1) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    try:
        import llama_cpp

        info["llama_cpp"] = getattr(llama_cpp, "__version__", "unknown")
    except ImportError:
        info["llama_cpp"] = None
    return info


def export_ggufs(model, tokenizer, work, preset: str, qtypes) -> dict:
    """{qtype: path} of `model` exported into `work` once per qtype; raises ImportError when llama-cpp-python is
    absent (nothing could run the files), for the caller to report as skipped."""
    from core.export.gguf import export_gguf
    import llama_cpp  # noqa: F401

    paths = {}
    for qtype in qtypes:
        paths[qtype] = work / f"{preset}-{qtype}.gguf"
        export_gguf(model, paths[qtype], qtype, tokenizer=tokenizer, check=False, modelfile=False)
    return paths


def gguf_backends(model, tokenizer, work, preset: str, qtypes, n_ctx: int, threads: int | None):
    """(qtype, open llama.cpp backend) for each of `qtypes`, exported from `model` into `work` (closed after each
    is used); raises ImportError when llama-cpp-python is absent, for the caller to report as skipped."""
    from core.infer.llamacpp import LlamaCppBackend

    for qtype, path in export_ggufs(model, tokenizer, work, preset, qtypes).items():
        backend = LlamaCppBackend(path, n_ctx=n_ctx, n_threads=threads)
        try:
            yield qtype, backend
        finally:
            backend.close()


def paired_text(d: dict, pct: bool) -> str:
    """A paired difference `{"mean", "ci95"}` (bench.rl_gain.paired) as "+1.2 pt [-0.3 pt, +2.8 pt]" (pct: shares
    shown as points) or "+0.012 [-0.003, +0.028]"."""
    f = (lambda x: f"{100 * x:+.1f} pt") if pct else (lambda x: f"{x:+.3f}")
    return f"{f(d['mean'])} [{f(d['ci95'][0])}, {f(d['ci95'][1])}]"


def grid(head: list[str], body: list[list[str]], markdown: bool = False) -> str:
    """Rows under a header: a Markdown table, or plain columns padded to their widest cell."""
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + body)


def run_tag(overrides) -> str:
    """A run folder suffix naming `--set` overrides (`optim.lr=1e-4` -> `optim.lr1e-4`), "" without any."""
    return "-".join(o.replace("method_options.", "").replace("=", "") for o in overrides)
