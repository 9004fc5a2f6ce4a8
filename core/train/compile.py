"""torch.compile: whether a run compiles its model, and why — the one place that decides it (engine and pre-flight
ask here), and the test for "this exception came from compiling, not from the model".

`compile: auto` compiles where the measured gain pays back the compile time within the run
(bench/compile_gain.py, docs/benchmarks.md "torch.compile on CPU"):
- CUDA: on. Kernel fusion removes most of the launch and memory traffic that dominate small models on a GPU.
- CPU: on only for runs of at least CPU_MIN_STEPS steps on fixed-shape batches (packed pretraining windows).
  Measured on a shared 2-core Xeon (1 thread, bf16): inductor needs 2.5–5.5 min to compile forward and backward,
  and saves 1.2–1.3× (`small`, `base`) to 1.6× (`tiny`) per step, so it pays back after about 250–600 steps.
  Batches whose length changes (chat records padded per batch) recompile for new shapes, which that measurement
  did not cover.
- MPS and others: off.
A compile failure never fails the run: the engine trains eagerly and emits a `warning` event.
"""
from __future__ import annotations

import torch

CPU_MIN_STEPS = 2000  # several times the measured break-even (250–600 steps), so noise cannot turn it into a loss


def resolve_compile(pref: str | bool, device: torch.device, steps: int | None = None,
                    fixed_shapes: bool = False) -> tuple[bool, str]:
    """(compile or not, the reason in words) for `compile: pref` ("auto", "on", "off"; an older config's true or
    false) on `device`, for a run of `steps` optimizer steps (None: not known yet) whose batches all have one
    shape (`fixed_shapes`)."""
    if isinstance(pref, bool):
        pref = "on" if pref else "off"
    if pref != "auto":
        return pref == "on", f"compile: {pref} was asked for"
    if device.type == "cuda":
        return True, "auto: compiled on CUDA (fused kernels; eager if compiling fails)"
    if device.type != "cpu":
        return False, f"auto: eager on {device.type}"
    if not fixed_shapes:
        return False, "auto: eager on CPU (batches change shape: each new shape would compile again)"
    if steps is None or steps < CPU_MIN_STEPS:
        return False, (f"auto: eager on CPU for runs under {CPU_MIN_STEPS} steps (compiling takes minutes and "
                       "pays back after about 250-600 steps)")
    return True, (f"auto: compiled on CPU: a {steps}-step run repays the minutes of compiling "
                  "(about 250-600 steps; eager if compiling fails)")


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
