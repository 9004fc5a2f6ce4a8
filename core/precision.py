"""Precision: which autocast dtype a run trains in, and why — the one place that decides it (the engine, the run
plan, RL rollouts, inference and pre-flight all ask here).

`auto` picks:
- CUDA: bf16 where the GPU computes it natively (Ampere and later), else fp16 with loss scaling. Emulated bf16
  (T4, V100: `torch.cuda.is_bf16_supported()` is true there too) is slower than fp16, so it does not count.
- CPU: bf16 where the CPU has native bf16 instructions (AVX512-BF16 or AMX): about 2× the fp32 matmul rate on such
  machines (docs/benchmarks.md), weights and optimizer state stay fp32. Elsewhere fp32: emulated bf16 is slower.
- MPS and others: fp32.

Asking for bf16 or fp16 by name on a CPU without native support for it (bf16: AVX512-BF16/AMX; fp16: AMX-FP16)
runs it emulated: `precision_warning` says so at pre-flight and at the start of the run (an AVX2-only AMD EPYC,
2026-12-07, `python -m bench.mfu --preset small --precisions fp32,bf16,fp16 --threads 1`: the FFN matmul at
93 GFLOP/s in fp32, 2 in bf16 and in fp16; docs/benchmarks.md).
"""
from __future__ import annotations

import contextlib

import torch

NAMES = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def cpu_native_bf16() -> str | None:
    """The CPU feature that gives native bf16 matmuls ("AMX", "AVX512-BF16"), or None."""
    probes = (("AMX", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported"))
    for name, probe in probes:
        try:
            if getattr(torch.cpu, probe)():
                return name
        except Exception:  # an older torch without the probe: no claim
            continue
    return None


def cpu_native_fp16() -> str | None:
    """The CPU feature that gives native fp16 matmuls ("AMX-FP16"), or None."""
    try:
        return "AMX-FP16" if torch.cpu._is_amx_fp16_supported() else None
    except Exception:  # an older torch without the probe: no claim
        return None


def cuda_native_bf16() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch without the keyword: compute capability 8.0+ has native bf16
        return torch.cuda.get_device_capability()[0] >= 8


def resolve_precision(pref: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """(autocast dtype or None for plain fp32, the reason in words) for `precision: pref` on `device`."""
    if pref != "auto":
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[pref], f"precision: {pref} was asked for"
    if device.type == "cuda":
        if cuda_native_bf16():
            return torch.bfloat16, "auto: this GPU computes bf16 natively"
        return torch.float16, "auto: this GPU has no native bf16, so fp16 with loss scaling"
    if device.type == "cpu":
        feature = cpu_native_bf16()
        if feature:
            return torch.bfloat16, f"auto: this CPU has native bf16 ({feature}); weights and optimizer stay fp32"
        return None, "auto: this CPU has no native bf16 (AVX512-BF16/AMX), so fp32"
    return None, f"auto: fp32 on {device.type}"


def precision_warning(pref: str, device: torch.device) -> str | None:
    """A warning for a half precision asked for by name where it is emulated (a CPU without AVX512-BF16/AMX), or
    None. `auto` never picks it there."""
    native = {"bf16": cpu_native_bf16, "fp16": cpu_native_fp16}.get(pref)
    if device.type != "cpu" or native is None or native():
        return None
    why = "has no native bf16 (AVX512-BF16/AMX)" if pref == "bf16" else "has no native fp16 (AMX-FP16)"
    return (f"precision: {pref} on this CPU is emulated (it {why}) and runs one to two orders of magnitude slower "
            f"than fp32 (an AVX2 CPU: 2 GFLOP/s against 93); set precision to auto, which picks "
            f"{NAMES[resolve_precision('auto', device)[0]]} here")


def configure_backends(device: torch.device) -> None:
    """Process-wide math settings for training on `device`: TF32 for the fp32 matmuls and convolutions that remain
    under autocast on CUDA (Ampere and later; a no-op elsewhere)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The autocast context for `dtype` on `device` (nothing for fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
