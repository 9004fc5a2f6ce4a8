"""Inference backends behind one interface: the torch model (a checkpoint or run dir) and llama.cpp (a .gguf).

Both render chats with OUR chat template (the tokenizer's, or the one stored in the GGUF), tokenize the
rendered text with their own tokenizer (identical ids: docs/field-notes.md), and run the same
`decode_loop`: sampling, incremental detokenization and stop handling live in one place, so a seeded
request gives the same text on both backends up to float noise in the logits. The interface itself (`Backend`)
lives in `core.infer.backend_base`, below this module and `core.infer.llamacpp`.

    with open_backend("runs/sft-1") as llm:
        for piece in llm.chat_stream([{"role": "user", "content": "你好"}], SamplingParams(temperature=0)):
            print(piece, end="", flush=True)
        print(llm.usage.prompt_tokens, llm.usage.completion_tokens, llm.finish_reason)
"""
from __future__ import annotations

from pathlib import Path

import torch

from core.infer.backend_base import Backend, model_name
from core.infer.generate import TorchStepper, set_rope_scaling
from core.infer.llamacpp import LlamaCppBackend


class TorchBackend(Backend):
    """A MiniMind checkpoint (checkpoint dir, checkpoints dir or run dir) run with PyTorch."""

    def __init__(self, checkpoint_or_run_dir: str | Path, device: str = "cpu", rope_scaling: bool = False,
                 dtype: torch.dtype | None = None):
        super().__init__()
        from core.model.io import load_model, resolve_checkpoint

        self.path = resolve_checkpoint(checkpoint_or_run_dir)
        self.model, self.tokenizer = load_model(self.path, device=device, dtype=dtype)
        if rope_scaling:
            set_rope_scaling(self.model, True)
        self.device = device
        self.eos_id = self.tokenizer.eos_id
        self.chat_template = self.tokenizer.chat_template
        self.name = model_name(Path(checkpoint_or_run_dir))

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _stepper(self):
        return TorchStepper(self.model)

    @property
    def max_context(self) -> int:
        return self.model.config.max_position_embeddings

    @property
    def vocab_size(self) -> int:
        return self.model.config.vocab_size

    @torch.inference_mode()
    def score(self, ids: list[int]) -> list[float]:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        logp = self.model(x).logits[0, :-1].float().log_softmax(-1)
        return logp.gather(1, x[0, 1:, None]).squeeze(1).tolist()

    def close(self) -> None:
        self.model = None


def open_backend(path: str | Path, device: str = "cpu", **options) -> Backend:
    """A .gguf file opens with llama.cpp; a directory (run, checkpoints or checkpoint dir) with torch."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        return LlamaCppBackend(path, **options)
    if path.is_dir():
        return TorchBackend(path, device=device, **options)
    what = "not a directory" if path.exists() else "no such file or directory"
    raise FileNotFoundError(f"{path}: {what}; expected a .gguf file or a checkpoint/run directory "
                            "(with model.safetensors + model_config.json, or checkpoints/latest)")
