"""Checkpoint directories: weights (safetensors, full precision), model config and a copy of the tokenizer.

Layout (docs/architecture.md): `model.safetensors`, `model_config.json`, `tokenizer/`, and for LoRA runs
`adapter.safetensors` + `lora_config.json` beside the base weights. The trainer adds its own state files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from core.config.model import ModelConfig
from core.model.model import MiniMindForCausalLM

WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model_config.json"
TOKENIZER_DIR = "tokenizer"
ADAPTER = "adapter.safetensors"
LATEST = "latest"


class CheckpointError(Exception):
    """A checkpoint that cannot be found or read; the message says which path and what to do."""


def model_state_dict(model: MiniMindForCausalLM) -> dict[str, torch.Tensor]:
    """Weights with HF names, contiguous, in float32; the tied lm_head is omitted (it is the embedding)."""
    sd = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        sd[k] = v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous()
    return sd


def save_checkpoint(model: MiniMindForCausalLM, out_dir: str | Path, tokenizer=None,
                    metadata: Optional[dict] = None) -> Path:
    """Write weights, model config and (optionally) the tokenizer into `out_dir` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(model_state_dict(model), str(out / WEIGHTS), metadata={"format": "pt", **(metadata or {})})
    model.config.save(out / MODEL_CONFIG)
    if tokenizer is not None:
        tokenizer.save(out / TOKENIZER_DIR)
    return out


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint dir from a checkpoint dir, a run dir (its latest checkpoint) or a run's checkpoints dir."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or directory")
    if p.is_file():
        raise CheckpointError(f"{p}: expected a checkpoint directory or a run directory, got a file"
                              + (" (open .gguf files with the llama.cpp backend)" if p.suffix == ".gguf" else ""))
    if (p / WEIGHTS).is_file():
        return p
    ckpts = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    latest = ckpts / LATEST
    if latest.is_file():
        target = ckpts / latest.read_text(encoding="utf-8").strip()
        if (target / WEIGHTS).is_file():
            return target
    candidates = sorted((d for d in ckpts.glob("step-*") if (d / WEIGHTS).is_file()), key=lambda d: d.name)
    if candidates:
        return candidates[-1]
    for name in ("final", "merged"):
        if (p / name / WEIGHTS).is_file():
            return p / name
    raise CheckpointError(f"{p}: no checkpoint found (expected {WEIGHTS}, or a run directory with "
                          f"checkpoints/{LATEST}); train a model first or pick another folder")


def read_model_config(ckpt_dir: str | Path) -> ModelConfig:
    path = Path(ckpt_dir) / MODEL_CONFIG
    try:
        return ModelConfig.load(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; this folder is not a MiniMind checkpoint") from None
    except (ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: invalid model config: {exc}") from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated weights ({exc}); "
                              "resume from an earlier checkpoint") from None


def load_weights_into(model: MiniMindForCausalLM, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Load HF-named weights; accepts files with or without the tied lm_head (MiniMind .pth has both)."""
    state = dict(state)
    if model.config.tie_word_embeddings:
        emb = state.get("model.embed_tokens.weight", state.get("lm_head.weight"))
        state.pop("lm_head.weight", None)
        if emb is not None:
            state["model.embed_tokens.weight"] = emb
    own = {k for k in model.state_dict() if not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
    missing, unexpected = sorted(own - state.keys()), sorted(state.keys() - own)
    if missing or unexpected:
        raise CheckpointError(f"{source}: weights do not match the model config "
                              f"(missing: {missing[:5]}, unexpected: {unexpected[:5]})")
    for k, v in state.items():
        expected = model.state_dict()[k].shape
        if v.shape != expected:
            raise CheckpointError(f"{source}: {k} has shape {tuple(v.shape)}, the config expects {tuple(expected)}")
    model.load_state_dict(state, strict=False)


def load_tokenizer(ckpt_dir: str | Path):
    from core.tokenizer import MiniMindTokenizer  # imported lazily: the model does not need it

    tdir = Path(ckpt_dir) / TOKENIZER_DIR
    if not (tdir / "tokenizer.json").is_file():
        raise CheckpointError(f"{tdir}: no tokenizer stored with this checkpoint")
    return MiniMindTokenizer.load(tdir)


def load_model(path: str | Path, device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None,
               with_tokenizer: bool = True):
    """Build the model of a checkpoint (run dir or checkpoint dir) -> (model in eval mode, tokenizer or None).

    LoRA checkpoints are merged into their base weights, so callers always get a plain model.
    """
    ckpt = resolve_checkpoint(path)
    config = read_model_config(ckpt)
    model = MiniMindForCausalLM(config)
    load_weights_into(model, read_weights(ckpt / WEIGHTS), str(ckpt / WEIGHTS))
    if (ckpt / ADAPTER).is_file():
        from core.model import lora

        lora.load_adapter(model, ckpt)
        model = lora.merge_lora(model)
    model.to(device=device, dtype=dtype) if dtype else model.to(device)
    model.eval()
    tokenizer = load_tokenizer(ckpt) if with_tokenizer else None
    return model, tokenizer
