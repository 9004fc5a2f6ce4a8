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


GREEDY_CHECK_TOKENS = 32  # greedy tokens that must agree before bf16 weights replace fp32 ones
GREEDY_CHECK_CHAT = [{"role": "user", "content": "Hello! 你好"}]


def bf16_keeps_greedy(model, tokenizer, n_tokens: int = GREEDY_CHECK_TOKENS) -> tuple[object, str]:
    """(the model to serve, the reason in words): a bf16 copy of `model` when this CPU computes bf16 natively and
    the copy's greedy continuation of a fixed prompt equals the fp32 model's for `n_tokens` tokens, else `model`.
    bf16 weights halve the bytes read per decoded token; the check keeps a model whose top choices are close calls
    (a small or briefly trained one) on fp32, where rounding would change what it says."""
    import copy

    from core.infer.generate import generate
    from core.infer.sampling import SamplingParams
    from core.precision import cpu_native_bf16

    feature = cpu_native_bf16()
    if feature is None:
        return model, "fp32 weights: this CPU has no native bf16"
    prompt = tokenizer.encode(tokenizer.apply_chat_template(GREEDY_CHECK_CHAT, add_generation_prompt=True))
    params = SamplingParams.greedy_params(n_tokens, stop_token_ids=[])
    reference = generate(model, tokenizer, prompt, params).token_ids
    candidate = copy.deepcopy(model).to(torch.bfloat16)
    if generate(candidate, tokenizer, prompt, params).token_ids != reference:
        return model, f"fp32 weights: bf16 changed the greedy continuation within {n_tokens} tokens"
    return candidate, f"bf16 weights ({feature}): the greedy continuation of {n_tokens} tokens is unchanged"


class TorchBackend(Backend):
    """A MiniMind checkpoint (checkpoint dir, checkpoints dir or run dir) run with PyTorch.

    `dtype`: None keeps the checkpoint's fp32 weights; "auto" (chat and serve on CPU) chooses bf16 weights where
    `bf16_keeps_greedy` finds the greedy output unchanged, decided per model at load (`self.dtype_reason`)."""

    def __init__(self, checkpoint_or_run_dir: str | Path, device: str = "cpu", rope_scaling: bool = False,
                 dtype: torch.dtype | str | None = None):
        super().__init__()
        from core.model.io import load_model, resolve_checkpoint

        self.path = resolve_checkpoint(checkpoint_or_run_dir)
        self.model, self.tokenizer = load_model(self.path, device=device, dtype=None if dtype == "auto" else dtype)
        self.dtype_reason = "fp32 weights" if dtype in (None, "auto") else f"{dtype} weights were asked for"
        if dtype == "auto" and torch.device(device).type == "cpu":
            self.model, self.dtype_reason = bf16_keeps_greedy(self.model, self.tokenizer)
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
