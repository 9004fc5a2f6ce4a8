"""K-quant GGUF files (Q4_K_M, Q5_K_M, Q6_K) made by llama.cpp's own quantizer from our f32 export.

K-quants are not written here: `llama_model_quantize` (llama-cpp-python) turns the f32 file into the K-quant file
exactly as `llama-quantize` does, with llama.cpp's mixtures (Q4_K_M keeps attn_v and half of ffn_down at Q6_K,
the output head at Q6_K) and its per-tensor fallbacks: a K-quant block holds 256 weights, so a tensor whose rows
are not a multiple of 256 gets a legacy type instead (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; llama-quant.cpp,
`llama_tensor_get_type`). The file is then read back with the `gguf` package to list every tensor's type, and
the fallbacks are named in the report.

The quantizer runs in a child process (`quantize_worker.py`), as the parity check does: llama.cpp aborts the
process on some malformed files, and the studio must survive that.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import gguf

from core.export.parity import describe_exit, explain
from core.export.types import GGUF_TYPES

# name -> llama-cpp-python's llama_ftype constant (llama.h's enum llama_ftype), for the types llama.cpp makes
KQUANTS: dict[str, str] = {name: "LLAMA_FTYPE_" + t.file_type for name, t in GGUF_TYPES.items()
                           if t.maker == "llama.cpp"}
K_TYPES = {gguf.GGMLQuantizationType.Q2_K, gguf.GGMLQuantizationType.Q3_K, gguf.GGMLQuantizationType.Q4_K,
           gguf.GGMLQuantizationType.Q5_K, gguf.GGMLQuantizationType.Q6_K}
QK_K = 256  # weights per K-quant super-block (ggml-common.h)
# tensors llama.cpp never quantizes, whatever the type: the MoE router (llama-quant.cpp keeps ffn_gate_inp)
NOT_QUANTIZED = ("ffn_gate_inp.weight",)
WORKER = Path(__file__).resolve().with_name("quantize_worker.py")
WORKER_TIMEOUT_S = 1800


class QuantizeError(RuntimeError):
    """llama.cpp could not quantize the file."""


def quantize_gguf(source: Path, out: Path, qtype: str, timeout: float = WORKER_TIMEOUT_S) -> dict:
    """Quantize the f32 GGUF `source` to `out` with llama.cpp; return {"tensor_types", "type_counts",
    "fallbacks"} read back from `out`."""
    if qtype not in KQUANTS:
        raise ValueError(f"{qtype!r} is not a K-quant: choose one of {', '.join(KQUANTS)}")
    out = Path(out)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="minimind-quantize-") as tmp:
        req = Path(tmp) / "request.json"
        req.write_text(json.dumps({"source": str(Path(source).resolve()), "out": str(out.resolve()),
                                   "ftype": KQUANTS[qtype], "n_threads": 2}), encoding="utf-8")
        try:
            proc = subprocess.run(worker_command(req), capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise QuantizeError(f"{out}: llama.cpp did not finish quantizing within {timeout:.0f} s") from None
    if proc.returncode != 0 or not out.is_file():
        raise QuantizeError(f"{out}: llama.cpp could not quantize {source} to {qtype} "
                            f"({describe_exit(proc.returncode)}):\n{explain(proc.stderr)}")
    return {**describe_types(out), "fallbacks": kquant_fallbacks(tensor_types(out), qtype)}


def worker_command(req_path: Path) -> list[str]:
    """The quantizer child's argv; in a PyInstaller bundle the app itself, given `--quantize-worker`."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--quantize-worker", str(req_path)]
    return [sys.executable, str(WORKER), str(req_path)]


def tensor_types(gguf_file: Path) -> dict[str, tuple[str, list[int]]]:
    """{tensor name: (GGML type name, shape as torch writes it: (out, in))}, read back from the file."""
    reader = gguf.GGUFReader(str(gguf_file))
    # GGUFReader's shape is ggml's ne order (row length first); reversed it is the torch (out, in) order
    return {t.name: (t.tensor_type.name, [int(d) for d in reversed(t.shape)]) for t in reader.tensors}


def describe_types(gguf_file: Path) -> dict:
    """{"tensor_types": {name: type}, "type_counts": {type: how many tensors}} of a GGUF file."""
    types = tensor_types(gguf_file)
    return {"tensor_types": {name: t for name, (t, _shape) in types.items()},
            "type_counts": dict(Counter(t for t, _shape in types.values()))}


def kquant_fallbacks(types: dict[str, tuple[str, list[int]]], qtype: str) -> list[str]:
    """The matrices of a K-quant file that hold another type, each with its reason (1-D norms and the MoE router
    stay f32 by llama.cpp's rule in every file type and are not listed)."""
    out = []
    for name, (type_name, shape) in types.items():
        if len(shape) < 2 or name.endswith(NOT_QUANTIZED) or gguf.GGMLQuantizationType[type_name] in K_TYPES:
            continue
        row = shape[-1]
        why = (f"rows of {row} are not a multiple of {QK_K}, the K-quant block" if row % QK_K
               else "llama.cpp's choice for this tensor")
        out.append(f"{name} {shape}: {type_name} ({why})")
    return out
