"""Loading a GGUF into llama-cpp-python, the one place that does it (the llama.cpp backend, the parity worker).

Why not plain `Llama(...)`: llama-cpp-python builds llama.cpp with `-march=native`, and on a CPU that reports
AMX (Intel Sapphire Rapids and later) llama.cpp then keeps quantised weights (q8_0) in its AMX "extra buffer
type". Where the kernel does not grant the AMX tile state (some VMs), the first matmul on them dies with SIGILL.
`Llama` has no switch for it, so the model parameters it asks for are taken with `use_extra_bufts` off on AMX
CPUs — the same as llama.cpp's own `--no-repack`. Weights then stay in their file layout; on other CPUs nothing
changes.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " amx_int8" in flags or " amx_tile" in flags


def load_llama(**options):
    """`llama_cpp.Llama(**options)`, with llama.cpp's extra (repacking/AMX) buffer types off on AMX CPUs."""
    import llama_cpp
    from llama_cpp import llama as llama_module

    if not cpu_has_amx():
        return llama_cpp.Llama(**options)
    low = llama_module.llama_cpp
    default_params = low.llama_model_default_params

    def params_without_extra_bufts():
        params = default_params()
        params.use_extra_bufts = False
        return params

    with _LOCK:  # the swap is process-wide for the length of one load
        low.llama_model_default_params = params_without_extra_bufts
        try:
            return llama_cpp.Llama(**options)
        finally:
            low.llama_model_default_params = default_params
