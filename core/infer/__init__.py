"""Generation (KV cache, sampling, streaming, batched rollouts) and backends (torch, llama.cpp).

See docs/inference.md. Heavy imports stay inside the modules; this package only re-exports names.
"""
from core.infer.backend import Backend, TorchBackend, open_backend
from core.infer.generate import (BatchResult, GenerationResult, Usage, generate, generate_batch, set_rope_scaling,
                                 stream_generate)
from core.infer.sampling import SamplingParams
from core.infer.text import IncrementalDecoder, TextStream

__all__ = ["Backend", "TorchBackend", "open_backend", "BatchResult", "GenerationResult", "Usage", "generate",
           "generate_batch", "set_rope_scaling", "stream_generate", "SamplingParams", "IncrementalDecoder",
           "TextStream"]
