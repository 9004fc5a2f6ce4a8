"""The GGUF types an export writes: one table that the writer, the quantizer, the CLI and the Export pane read.

Plain names only (no gguf, numpy or torch import), so `minimind export --help` and the studio can list them cheaply.
"""
from __future__ import annotations

from typing import NamedTuple


class GGUFType(NamedTuple):
    maker: str        # "gguf-py": written tensor by tensor here; "llama.cpp": its quantizer, from the f32 export
    tensor_type: str  # ggml tensor type of the file's matrices (gguf.GGMLQuantizationType name; a K-quant's base)
    file_type: str    # llama_ftype (gguf.LlamaFileType name; llama-cpp-python's is "LLAMA_FTYPE_" + it)
    summary: str      # for people: size and exactness


# Largest to smallest file.
GGUF_TYPES: dict[str, GGUFType] = {
    "f32": GGUFType("gguf-py", "F32", "ALL_F32", "exact"),
    "f16": GGUFType("gguf-py", "F16", "MOSTLY_F16", "half the size, max |Δlogit| ≈ 1e-2"),
    "bf16": GGUFType("gguf-py", "BF16", "MOSTLY_BF16", "half the size, f32's exponent range"),
    "q8_0": GGUFType("gguf-py", "Q8_0", "MOSTLY_Q8_0", "8.5 bits a weight"),
    "q6_k": GGUFType("llama.cpp", "Q6_K", "MOSTLY_Q6_K", "6.6 bits a weight, llama.cpp K-quant"),
    "q5_k_m": GGUFType("llama.cpp", "Q5_K", "MOSTLY_Q5_K_M", "≈ 5.7 bits a weight, llama.cpp K-quant mix"),
    "q4_k_m": GGUFType("llama.cpp", "Q4_K", "MOSTLY_Q4_K_M", "≈ 4.9 bits a weight, llama.cpp K-quant mix"),
    "q4_0": GGUFType("gguf-py", "Q4_0", "MOSTLY_Q4_0", "4.5 bits a weight"),
}
TYPE_NAMES: tuple[str, ...] = tuple(GGUF_TYPES)
