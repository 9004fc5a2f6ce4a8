"""The training config's schema: plain data, trusted inside once validated.

`TrainConfig.model_json_schema()` drives the studio's run form, so every field carries a description and its
bounds. Method-specific settings (LoRA's rank, DPO's beta, RL rollouts, ...) live in `method_options`, a free dict
that the method's option model (core/methods.py) validates, so a new method needs no edit here. The schema asks
the method registry, which sits below it, for the known methods and their defaults; reading files and `--set`
overrides is the edge's job (core/config/load.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.config.model import ModelConfig
from core.methods import apply_defaults, get_method


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

    files: list[str] = Field(default_factory=list, description="Training data files (JSONL, JSON, Parquet, a datasets.save_to_disk folder, or .txt for pretrain).")
    seq_len: int = Field(512, ge=8, le=65536, description="Pretrain: tokens per packed window.")
    max_len: int = Field(512, ge=8, le=65536, description="SFT/DPO/RL: longest sample in tokens (longer ones are truncated).")
    eval_files: list[str] = Field(default_factory=list, description="Held-out files for `eval` events (optional).")
    eval_batches: int = Field(8, ge=1, le=100000, description="Batches per evaluation.")
    cache_dir: str | None = Field(None, description="Token cache directory (default: <run_dir>/cache).")
    on_error: Literal["raise", "skip"] = Field("raise", description="Bad records: stop with file:line, or skip with a warning.")
    tokenizer: str | None = Field(None, description="Tokenizer directory; default: the init checkpoint's tokenizer.")
    mappings: dict[str, dict] = Field(
        default_factory=dict, description="How each data file's rows were read ({file: {format, columns, tags}}, "
        "docs/data-formats.md#mapping). Filled at the start of a run from each file's <file>.mapping.json or the "
        "detected format; a mapping given here wins.")


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


class SweepLink(_Strict):
    """Where a sweep trial came from (`minimind sweep`, core/sweep): the run itself is an ordinary run."""

    id: str = Field(description="The sweep's id (its folder's sweep.json).")
    dir: str = Field("", description="The sweep folder: spec, sweep.json and the Optuna study (study.db).")
    trial: int = Field(ge=0, description="The trial's number in the Optuna study.")
    params: dict[str, Any] = Field(default_factory=dict, description="The values this trial set (field: value).")


class WandbLog(_Strict):
    enabled: bool = Field(False, description="Also log metrics to Weights & Biases (needs `pip install wandb`; a "
                          "missing package is one warning, never a failed run).")
    mode: Literal["offline", "online"] = Field("offline", description="offline: files under <run_dir>/wandb only "
                                               "(upload later with `wandb sync`); online: send to the wandb server.")
    project: str = Field("minimind", min_length=1, max_length=128, description="wandb project.")
    entity: str | None = Field(None, max_length=128, description="wandb entity (team or user); default: yours.")


class MlflowLog(_Strict):
    enabled: bool = Field(False, description="Also log metrics and the config to MLflow (needs `pip install "
                          "mlflow-skinny`; a missing package is one warning, never a failed run).")
    tracking_uri: str | None = Field(None, max_length=2048, description="Where runs go: a folder or file: URI (MLflow "
                                     "file store), sqlite:///path.db or http(s)://server; default: <run_dir>/mlruns.")
    experiment: str = Field("minimind", min_length=1, max_length=256, description="MLflow experiment name.")


class LogConfig(_Strict):
    """External trackers: each consumes the same events as events.jsonl (rank 0 only; core/train/trackers.py)."""

    @model_validator(mode="before")
    @classmethod
    def _bool_shorthand(cls, data):
        # `log.wandb: true` / `null` in a config or `--set` turns a tracker on / off with its defaults
        if isinstance(data, dict):
            data = {k: ({"enabled": bool(v)} if k in ("wandb", "mlflow") and (isinstance(v, bool) or v is None)
                        else v) for k, v in data.items()}
        return data

    tensorboard: bool = Field(False, description="Also write TensorBoard event files to <run_dir>/tensorboard "
                              "(Runs › Open in TensorBoard, or `tensorboard --logdir <run_dir>/tensorboard`).")
    wandb: WandbLog = Field(default_factory=WandbLog)
    mlflow: MlflowLog = Field(default_factory=MlflowLog)


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
    method_options: dict[str, Any] = Field(default_factory=dict, description="Method-specific settings, validated by the method's recipe.")
    sweep: SweepLink | None = Field(None, description="Set by `minimind sweep` on each trial: the sweep it belongs "
                                    "to (docs/sweeps.md). The trainer ignores it; lineage reads it.")
    log: LogConfig = Field(default_factory=LogConfig, description="Trackers that also receive the run's metrics "
                           "(TensorBoard, wandb, MLflow); docs/training.md#trackers.")

    @model_validator(mode="before")
    @classmethod
    def _method_defaults(cls, data: Any) -> Any:
        # a field the config leaves out gets the method's value (learning rate, schedule, batch...), scaled to the
        # parent run or the model (core.methods.resolve_defaults); what the config sets is kept
        if not isinstance(data, dict):
            return data
        return apply_defaults(_move_old_lora(data))

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_bool(cls, v: Any) -> Any:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # `compile: true` in older configs

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        get_method(v)
        return v

    @model_validator(mode="after")
    def _check_method_needs(self) -> "TrainConfig":
        if get_method(self.method).needs_init and not self.init:
            raise ValueError(f"method {self.method!r} needs `init` (the checkpoint or run dir to start from)")
        return self


def _move_old_lora(data: dict) -> dict:
    """Configs saved before LoRA's settings became its `method_options` carry a top-level `lora` block (every
    method's did, with the defaults): a lora run's moves into `method_options` (what that sets wins), the others'
    is dropped."""
    if "lora" not in data:
        return data
    out = {k: v for k, v in data.items() if k != "lora"}
    old, options = data["lora"], data.get("method_options") or {}
    if out.get("method") == "lora" and isinstance(old, dict) and isinstance(options, dict):
        out["method_options"] = {**old, **options}
    return out


def save_train_config(cfg: TrainConfig, path: str | Path) -> None:
    """The resolved config as the run folder's config.json (what `load_train_config` reads back), written whole:
    a temporary file renamed over it, so a process killed while writing leaves no half a config to resume from."""
    from core.atomic_file import replace_file

    replace_file(path, cfg.model_dump_json(indent=2) + "\n")
