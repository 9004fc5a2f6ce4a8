"""Child process of a K-quant export: llama.cpp's own quantizer (`llama_model_quantize`) on an f32 GGUF.

Run as `python core/export/quantize_worker.py REQUEST.json` (a plain script: it imports only llama_cpp). It runs
in its own process for the reason the parity check does: llama.cpp aborts the whole process (SIGABRT, a
GGML_ASSERT) on some files, and the studio calls this from its own process.

Request: {"source": f32 GGUF, "out": GGUF to write, "ftype": llama_ftype name ("LLAMA_FTYPE_MOSTLY_Q4_K_M"),
"n_threads"}. Prints one JSON line {"returncode": llama_model_quantize's return value}; exits 1 when it failed.
"""
from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, req["ftype"])
    params.nthread = int(req.get("n_threads", 1))
    rc = llama_cpp.llama_model_quantize(str(req["source"]).encode(), str(req["out"]).encode(), ctypes.byref(params))
    print(json.dumps({"returncode": int(rc)}), flush=True)
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
