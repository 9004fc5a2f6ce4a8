"""Training configs: plain data, validated once at the edge (config file, `--set`, CLI flags), trusted inside.

`TrainConfig.model_json_schema()` drives the studio's run form, so every field carries a description and its
bounds. Method-specific settings (DPO beta, RL rollouts, ...) live in `method_options`, a free dict that the
method's option model (core/methods.py) validates, so a new method needs no edit here.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.config.model import ModelConfig

DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfigError(ValueError):
    """A config that cannot be used: the message names the source, the field and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _drop_old_kind(cls, data):
        # configs saved before the method registry carry `kind: null`; the method alone decides the format now
        if isinstance(data, dict) and "kind" in data and data["kind"] is None:
            data = {k: v for k, v in data.items() if k != "kind"}
        return data

    files: list[str] = Field(default_factory=list, description="Training data files (JSONL, or .txt for pretrain).")
    seq_len: int = Field(512, ge=8, le=65536, description="Pretrain: tokens per packed window.")
    max_len: int = Field(512, ge=8, le=65536, description="SFT/DPO/RL: longest sample in tokens (longer ones are truncated).")
    eval_files: list[str] = Field(default_factory=list, description="Held-out files for `eval` events (optional).")
    eval_batches: int = Field(8, ge=1, le=100000, description="Batches per evaluation.")
    cache_dir: str | None = Field(None, description="Token cache directory (default: <run_dir>/cache).")
    on_error: Literal["raise", "skip"] = Field("raise", description="Bad records: stop with file:line, or skip with a warning.")
    tokenizer: str | None = Field(None, description="Tokenizer directory; default: the init checkpoint's tokenizer.")


class OptimConfig(_Strict):
    lr: float = Field(5e-4, gt=0, le=1.0, description="Peak learning rate. Left out, it is the method's own (SFT 1e-5, "
                      "DPO 4e-8, RL 3e-7 as upstream MiniMind), scaled to the init run's rate or the model's width; "
                      "docs/training.md#defaults.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a fraction of `lr` (cosine schedules).")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW decoupled weight decay (torch default 0.01).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas, each in [0, 1).")
    eps: float = Field(1e-8, gt=0, le=1e-2, description="AdamW epsilon.")
    warmup_steps: int = Field(0, ge=0, le=10_000_000, description="Linear warm-up steps.")
    schedule: Literal["cosine", "minimind", "constant"] = Field(
        "cosine", description="cosine: warm-up then cosine to min_lr_ratio·lr; minimind: lr·(0.1+0.45·(1+cos(πt/T))); constant.")
    grad_clip: float = Field(1.0, ge=0, le=1e6, description="Clip the global grad norm to this (0 = off).")
    accumulation: int = Field(1, ge=1, le=4096, description="Micro-batches per optimizer step.")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class LoraConfig(_Strict):
    rank: int = Field(8, ge=1, le=1024, description="Adapter rank r.")
    alpha: float = Field(16.0, gt=0, le=4096, description="Scale: the update is (alpha/r)·B@A.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_LORA_TARGETS),
                                      description="nn.Linear modules to adapt, matched by name (last path component).")


class TrainConfig(_Strict):
    method: str = Field("pretrain", description="Training method (one recipe each; core/methods.py lists them).")
    model: ModelConfig | str | None = Field(
        None, description="Model config or preset name; default: the init checkpoint's config, else the 'small' preset.")
    init: str | None = Field(None, description="Start from this checkpoint or run dir (required for sft-after-pretrain, lora, RL).")
    run_dir: str | None = Field(None, description="Where checkpoints and events.jsonl go (default runs/<method>-<time>).")
    max_steps: int | None = Field(None, ge=1, le=100_000_000, description="Optimizer steps; overrides epochs when set.")
    epochs: int = Field(1, ge=1, le=100000, description="Passes over the data (when max_steps is not set).")
    batch_size: int = Field(16, ge=1, le=65536, description="Global micro-batch (all ranks together) in sequences.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto: bf16 on GPUs and CPUs with native bf16 (AVX512-BF16/AMX), fp16 on other GPUs, else fp32.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: cuda, then mps, then cpu.")
    compile: Literal["auto", "on", "off"] = Field(
        "auto", description="torch.compile the model. auto: on CUDA; on CPU only for pretraining runs of 2000+ steps (where the measured gain repays the compile time); a compile failure falls back to eager with a warning.")
    gradient_checkpointing: bool = Field(False, description="Recompute each decoder layer's activations in the backward pass instead of keeping them: less memory for long sequences, about a third more compute.")
    seed: int = Field(42, ge=0, le=2**31 - 1, description="Seed for init, data order and dropout.")
    log_every: int = Field(10, ge=1, le=1_000_000, description="Steps between `metric` events.")
    eval_every: int = Field(0, ge=0, le=1_000_000, description="Steps between evaluations (0 = off).")
    eval_tasks: list[str] = Field(default_factory=list, description="Benchmarks scored at each evaluation as "
                                  "eval/<task>/acc: built-in sets (demo-facts, shared-poems) or files (docs/evaluation.md).")
    save_every: int = Field(500, ge=0, le=1_000_000, description="Steps between checkpoints (0 = only at the end).")
    keep_last: int = Field(3, ge=1, le=1000, description="Checkpoints kept on disk.")
    deterministic: bool = Field(False, description="Deterministic kernels (slower on GPU).")
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig, description="Used by the lora method.")
    method_options: dict[str, Any] = Field(default_factory=dict, description="Method-specific settings, validated by the method's recipe.")

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        # a field the config leaves out gets the method's value (learning rate, schedule, batch...), scaled to the
        # parent run or the model (core.methods.resolve_defaults); what the config sets is kept
        if not isinstance(data, dict):
            return data
        from core.methods import apply_defaults  # lazy: core.methods imports core.config

        return apply_defaults(data)

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_bool(cls, v: Any) -> Any:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # `compile: true` in older configs

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from core.methods import get_method  # lazy: core.methods imports core.config

        get_method(v)
        return v

    @model_validator(mode="after")
    def _check_method_needs(self) -> "TrainConfig":
        from core.methods import get_method

        if get_method(self.method).needs_init and not self.init:
            raise ValueError(f"method {self.method!r} needs `init` (the checkpoint or run dir to start from)")
        return self

    def data_kind(self) -> str:
        """The record format this run reads: the method's (core/methods.py)."""
        from core.methods import get_method

        return get_method(self.method).data_kind


# ---- edge helpers: JSON files, --set overrides, readable errors -------------------------------------------

def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line per problem: `source: field.sub: message (got value)`."""
    lines = []
    for err in exc.errors():
        # an unknown key may hold newlines or be empty: quote it so each problem stays one readable line
        where = ".".join(str(p) if str(p).isprintable() and str(p).strip() == str(p) != "" else repr(str(p))
                         for p in err["loc"]) or "(top level)"
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        lines.append(f"{source}: {where}: {err['msg']}{got}")
    return "\n".join(lines)


def _parse_value(text: str) -> Any:
    """`--set` values are JSON when they parse (numbers, true, lists), else plain strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` strings to a config dict (in place, returned)."""
    for item in overrides or []:
        if "=" not in item:
            raise TrainConfigError(f"--set {item!r}: expected key=value, e.g. optim.lr=3e-4")
        key, value = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None or isinstance(child, str):  # e.g. model given as a preset name
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise TrainConfigError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return data


def validate_train_config(data: dict, source: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(format_validation_error(exc, source)) from None


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None,
                      base: dict | None = None) -> TrainConfig:
    """Read a JSON config (or start from `base`), apply `--set` overrides, validate."""
    data: dict = dict(base or {})
    source = "config"
    if path is not None:
        source = str(path)
        try:
            loaded = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise TrainConfigError(f"{path}: (top level): a config must be a JSON object of fields, "
                                       f"not {type(loaded).__name__}; see docs/training.md")
            data.update(loaded)
        except FileNotFoundError:
            raise TrainConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as exc:
            raise TrainConfigError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from None
    apply_overrides(data, overrides or [])
    return validate_train_config(data, source)


def save_train_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(cfg.model_dump_json(indent=2) + "\n", encoding="utf-8")
