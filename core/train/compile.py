"""torch.compile: whether a run compiles its model, and why — the one place that decides it (engine and pre-flight
ask here), and the test for "this exception came from compiling, not from the model".

`compile: auto` compiles where the measured gain pays back the compile time within a typical run
(bench/compile_gain.py, docs/benchmarks.md):
- CUDA: on. Kernel fusion removes most of the launch and memory traffic that dominate small models on a GPU.
- CPU: off. Measured on a 2-core AVX512-BF16 machine, inductor takes minutes to compile the `small`/`base`
  forward and backward and gains little per step (docs/benchmarks.md, "torch.compile on CPU").
- MPS and others: off.
A compile failure never fails the run: the engine trains eagerly and emits a `warning` event.
"""
from __future__ import annotations

import torch


def resolve_compile(pref: str, device: torch.device) -> tuple[bool, str]:
    """(compile or not, the reason in words) for `compile: pref` ("auto", "on", "off") on `device`."""
    if pref != "auto":
        return pref == "on", f"compile: {pref} was asked for"
    if device.type == "cuda":
        return True, "auto: compiled on CUDA (fused kernels; eager if compiling fails)"
    if device.type == "cpu":
        return False, "auto: eager on CPU (compiling takes minutes and gains little per step here)"
    return False, f"auto: eager on {device.type}"


def is_compile_error(exc: BaseException) -> bool:
    """An exception raised by torch.compile's tracing or code generation (dynamo, a backend, inductor, the C++
    or CUDA compiler it calls), which eager execution would not raise."""
    import torch._dynamo.exc as dynamo_exc

    kinds: tuple = (dynamo_exc.TorchDynamoException,)
    try:
        from torch._inductor.exc import InductorError

        kinds += (InductorError,)
    except ImportError:  # older torch: inductor errors arrive wrapped in BackendCompilerFailed
        pass
    return isinstance(exc, kinds)
