"""LoRA: low-rank adapters on chosen nn.Linear layers (Hu et al. 2021, "LoRA", eq. 3: h = W0·x + (α/r)·B·A·x).

Differences from MiniMind's `model_lora.py` (which adapts only square layers, q/o in practice, with no α/r
scale and no merge): any shape is adapted, targets are chosen by name, the update is scaled by α/r, and
`merge_lora` folds it into W so a LoRA run exports like any model.

`LoRALinear` subclasses nn.Linear and keeps the frozen `weight`/`bias` under their original names, so the base
state-dict keys stay HF-compatible (`...q_proj.weight`); adapter keys are `...q_proj.lora_A` (r, in) and
`...q_proj.lora_B` (out, r). A checkpoint of a LoRA run holds the base in model.safetensors and the adapter
alone in adapter.safetensors + lora_config.json; `load_adapter(model, ckpt_dir)` reads them back.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ADAPTER_FILE = "adapter.safetensors"
LORA_CONFIG_FILE = "lora_config.json"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Linear):
    """nn.Linear plus a trainable low-rank update (α/r)·B@A; B starts at zero so training starts from W0."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        nn.Module.__init__(self)  # share the base parameters instead of allocating new ones
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.rank, self.alpha = int(rank), float(alpha)
        self.scaling = self.alpha / self.rank
        dev, dt = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(self.rank, self.in_features, device=dev, dtype=dt))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, device=dev, dtype=dt))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear / PEFT initialise A
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (.., in) → (.., r) → (.., out)
        return out + self.scaling * update

    def merged_linear(self) -> nn.Linear:
        """A plain nn.Linear with W + (α/r)·B@A."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            delta = (self.lora_B.float() @ self.lora_A.float()) * self.scaling
            lin.weight.copy_((self.weight.float() + delta).to(self.weight.dtype))
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, rank={self.rank}, alpha={self.alpha}"


def _cfg_fields(cfg) -> tuple[int, float, float, list[str]]:
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    return (int(get("rank", 8)), float(get("alpha", 16.0)), float(get("dropout", 0.0)),
            list(get("target_modules", None) or DEFAULT_TARGETS))


def apply_lora(model: nn.Module, cfg) -> nn.Module:
    """Replace every nn.Linear whose name (last component) is in `cfg.target_modules` by a LoRALinear,
    freeze everything else, and return the model. `cfg` is a LoraConfig or a dict with the same keys."""
    rank, alpha, dropout, targets = _cfg_fields(cfg)
    tied = sorted({"lm_head", "embed_tokens"} & set(targets))
    if tied and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        # the head shares the embedding matrix: merging would untie it and saving (which stores the embedding
        # alone) would silently drop the adapter
        raise ValueError(f"LoRA: lora.target_modules has {tied}, but this model ties its input embedding to the "
                         "output head (tie_word_embeddings); remove them from lora.target_modules")
    for p in model.parameters():
        p.requires_grad_(False)
    replaced = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and type(child) is nn.Linear:
                setattr(module, child_name, LoRALinear(child, rank, alpha, dropout))
                replaced += 1
    if replaced == 0:
        raise ValueError(f"LoRA: no nn.Linear named any of {targets} in the model; "
                         f"check lora.target_modules (e.g. q_proj, v_proj)")
    for m in model.modules():
        if isinstance(m, LoRALinear):
            m.lora_A.requires_grad_(True)
            m.lora_B.requires_grad_(True)
    model.lora_config = {"rank": rank, "alpha": alpha, "dropout": dropout, "target_modules": targets}
    return model


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter alone: `<module>.lora_A` / `<module>.lora_B` tensors."""
    return {k: v for k, v in model.state_dict().items() if k.endswith((".lora_A", ".lora_B"))}


def base_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The frozen base weights under their original HF names (adapter keys left out)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith((".lora_A", ".lora_B"))}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight (W += (α/r)·B@A) and return the plain model (no LoRA modules)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged_linear())
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def save_adapter(model: nn.Module, ckpt_dir: str | Path) -> list[Path]:
    """Write adapter.safetensors + lora_config.json into `ckpt_dir`; returns the paths written."""
    from safetensors.torch import save_file

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in lora_state_dict(model).items()}
    save_file(tensors, str(ckpt_dir / ADAPTER_FILE), metadata={"format": "pt"})
    (ckpt_dir / LORA_CONFIG_FILE).write_text(json.dumps(getattr(model, "lora_config", {}), indent=2) + "\n", encoding="utf-8")
    return [ckpt_dir / ADAPTER_FILE, ckpt_dir / LORA_CONFIG_FILE]


def load_adapter(model: nn.Module, ckpt_dir: str | Path) -> nn.Module:
    """Attach the adapter saved in `ckpt_dir` (applying LoRA from lora_config.json if the model has none yet)
    and load its weights. Returns the model, still unmerged; call `merge_lora` for a plain model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    cfg_path, ad_path = ckpt_dir / LORA_CONFIG_FILE, ckpt_dir / ADAPTER_FILE
    if not has_lora(model):
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{cfg_path}: cannot read the LoRA config ({exc}); the checkpoint is incomplete") from None
        apply_lora(model, cfg)
    try:
        tensors = load_file(str(ad_path))
    except (OSError, SafetensorError) as exc:
        raise ValueError(f"{ad_path}: cannot read the adapter ({exc}); the checkpoint is truncated or corrupt") from None
    expected = lora_state_dict(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{ad_path}: adapter does not fit this model (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}); was it trained on another model or with other target_modules?")
    model.load_state_dict(tensors, strict=False)
    return model
