"""Inference backends behind one interface: the torch model (a checkpoint or run dir) and llama.cpp (a .gguf).

Both render chats with OUR chat template (the tokenizer's, or the one stored in the GGUF), tokenize the
rendered text with their own tokenizer (identical ids: docs/field-notes.md), and run the same
`decode_loop`: sampling, incremental detokenization and stop handling live in one place, so a seeded
request gives the same text on both backends up to float noise in the logits.

    with open_backend("runs/sft-1") as llm:
        for piece in llm.chat_stream([{"role": "user", "content": "你好"}], SamplingParams(temperature=0)):
            print(piece, end="", flush=True)
        print(llm.usage.prompt_tokens, llm.usage.completion_tokens, llm.finish_reason)
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

import torch

from core.infer.generate import TorchStepper, Usage, decode_loop, set_rope_scaling
from core.infer.sampling import SamplingParams
from core.tokenizer.chat_template import CHAT_TEMPLATE, render

CONTROL_IDS = frozenset({0, 1, 2})  # <|endoftext|>, <|im_start|>, <|im_end|>: never shown as text


class Backend(ABC):
    """A loaded model that streams completions. Not thread-safe: one generation at a time per backend."""

    name: str = "model"
    eos_id: int = 2
    chat_template: str = CHAT_TEMPLATE

    def __init__(self):
        self.usage = Usage()              # token counts and timings of the latest call
        self.finish_reason: str | None = None  # "stop" | "length" after the latest call ran to its end

    # ---- what each backend provides -----------------------------------------------------------------
    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """Ids of `text`, special tokens written in it kept atomic, no BOS added."""

    @abstractmethod
    def detokenize(self, ids: list[int]) -> str:
        """Text of `ids` with control tokens dropped."""

    @abstractmethod
    def _stepper(self): ...

    @property
    @abstractmethod
    def max_context(self) -> int:
        """Most tokens (prompt + completion) one sequence may hold."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    def score(self, ids: list[int]) -> list[float]:
        """log p(ids[i] | ids[:i]) for i = 1..len(ids)-1 (perplexity, evaluation)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score token sequences")

    def close(self) -> None:
        """Free the model. Call before exit (llama.cpp otherwise raises from `Llama.__del__` at shutdown)."""

    # ---- shared behaviour ---------------------------------------------------------------------------
    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text for `messages` ({"role", "content"}), ending with the assistant header."""
        return render(self.chat_template, messages, add_generation_prompt=True,
                      bos_token="<|im_start|>", eos_token="<|im_end|>")

    def chat_stream(self, messages: list[dict], sampling: SamplingParams | None = None) -> Iterator[str]:
        return self.stream_ids(self.tokenize(self.render_chat(messages)), sampling)

    def complete_stream(self, prompt: str, sampling: SamplingParams | None = None) -> Iterator[str]:
        return self.stream_ids(self.tokenize(prompt), sampling)

    def chat(self, messages: list[dict], sampling: SamplingParams | None = None) -> str:
        return "".join(self.chat_stream(messages, sampling))

    def complete(self, prompt: str, sampling: SamplingParams | None = None) -> str:
        return "".join(self.complete_stream(prompt, sampling))

    def stream_ids(self, prompt_ids: list[int], sampling: SamplingParams | None = None) -> Iterator[str]:
        """Stream the completion of already-tokenized input; `usage`/`finish_reason` update as it runs."""
        self.usage, self.finish_reason = Usage(prompt_tokens=len(prompt_ids)), None

        def finished(stream):
            self.finish_reason = stream.finish_reason

        return decode_loop(self._stepper(), prompt_ids, sampling or SamplingParams(), self.detokenize,
                           eos_id=self.eos_id, vocab_size=self.vocab_size, max_positions=self.max_context,
                           stats=self.usage, on_finish=finished)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


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
        self.name = _model_name(Path(checkpoint_or_run_dir))

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


def _model_name(path: Path) -> str:
    path = path.resolve()
    if path.suffix == ".gguf":
        return path.stem
    if path.name.startswith("step-") and path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}/{path.name}"  # run/step-000500
    return path.name


def open_backend(path: str | Path, device: str = "cpu", **options) -> Backend:
    """A .gguf file opens with llama.cpp; a directory (run, checkpoints or checkpoint dir) with torch."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        from core.infer.llamacpp import LlamaCppBackend

        return LlamaCppBackend(path, **options)
    if path.is_dir():
        return TorchBackend(path, device=device, **options)
    what = "not a directory" if path.exists() else "no such file or directory"
    raise FileNotFoundError(f"{path}: {what}; expected a .gguf file or a checkpoint/run directory "
                            "(with model.safetensors + model_config.json, or checkpoints/latest)")
