"""The run plan: what a training run will do on this machine, decided once.

A `RunPlan` holds the device, the precision and whether the model is compiled (each with its reason), the record
kind the run reads, its optimizer steps, the memory it needs per GPU and, when a step has been timed, its wall
time. Three readers, one arithmetic: the engine's set-up takes its device, precision and steps from the plan
(core/train/engine.py), the studio's pre-flight renders it (studio/panes/config/preflight.py), and
`minimind train <method> --dry-run` prints it (`plan_from_setup`: the recipe builds its data and models exactly
as the run's set-up does, then nothing trains).

The decisions themselves stay where they are made: `core.device.resolve_device`, `core.precision.resolve_precision`,
`core.train.compile.resolve_compile`, the method registry's data kinds (core/methods.py) and the recipe's
batch sampler; this module only puts them together, with the step count, memory and time arithmetic.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from core.config.train import TrainConfig
from core.device import device_type
from core.precision import NAMES, resolve_precision
from core.train.compile import resolve_compile

DTYPES = {name: dtype for dtype, name in NAMES.items()}  # "bf16" -> torch.bfloat16, "fp32" -> None


# ---- the record kind ------------------------------------------------------------------------------------------
def resolve_data_kind(method: str, files: list) -> str:
    """The record kind `method` reads (core/methods.py); for a method that reads several kinds, the one detected
    in its first training file (a file that cannot be read gives the method's own kind: the data check says why)."""
    from core.methods import get_method

    spec = get_method(method)
    if not spec.other_kinds or not files:
        return spec.data_kind
    from core.data import detect_kind

    try:
        found = detect_kind(files[0])
    except Exception:
        return spec.data_kind
    found = "pretrain" if found == "text" else found
    return found if found in spec.kinds else spec.data_kind


# ---- steps -----------------------------------------------------------------------------------------------------
def step_counts(num_batches: int, accumulation: int, max_steps: int | None, epochs: int,
                batch_size: int) -> tuple[int, int]:
    """(steps per epoch, total optimizer steps) of a run whose data holds `num_batches` global micro-batches an
    epoch: `max_steps` when set, else `epochs` × whole accumulation groups (a partial group is dropped)."""
    steps_per_epoch = num_batches // accumulation
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size×accumulation: the data holds {num_batches} batches of {batch_size}, fewer than "
                         f"one optimizer step of {accumulation}; add data or lower batch_size")
    return steps_per_epoch, max_steps or epochs * steps_per_epoch


def estimated_batches(kind: str, records: int, tokens_per_record: float, seq_len: int, batch_size: int) -> int:
    """Global micro-batches an epoch before the data is tokenized (pre-flight): pretraining packs documents into
    `seq_len` windows, every other kind takes one record a row."""
    rows = records * tokens_per_record / seq_len if kind == "pretrain" else records
    return int(rows // max(1, batch_size))


# ---- time ------------------------------------------------------------------------------------------------------
def time_estimate(steps: int, accumulation: int, step_seconds: float, factor: float,
                  price_per_hour: float | None = None) -> dict:
    """Wall time of `steps` optimizer steps from the calibrated seconds of one micro-batch step of the policy
    (core/train/calibration.py), times the method's passes per step (`step_models`), and its cost at a price."""
    per_step = step_seconds * accumulation * factor
    out = {"seconds": steps * per_step, "step_seconds": per_step, "steps": steps}
    if price_per_hour:
        out.update(price_per_hour=price_per_hour, cost=out["seconds"] / 3600 * price_per_hour)
    return out


# ---- memory ----------------------------------------------------------------------------------------------------
def _options_for_estimate(spec, options: dict):
    """The method's options as given, else its defaults while the form shows the field error; None when it has
    no option model or its defaults are incomplete (a required field)."""
    for candidate in (options, {}):
        try:
            return spec.options.model_validate(candidate) if spec.options is not None else None
        except Exception:
            continue
    return None


def estimate_memory(config: dict, params: int, teacher_params: int = 0, on_cuda: bool | None = None) -> dict[str, Any]:
    """Training memory per GPU in bytes (an estimate, shown as such) of `config` (a TrainConfig as JSON, with
    `model` a ModelConfig dict and optionally `n_gpus`) for a model of `params` parameters.

    Weights, gradients and AdamW's two moments are kept in fp32 (4 + 4 + 8 bytes a trained parameter; LoRA
    trains only its adapters). Activations per layer follow Korthikanti et al. 2022 ("Reducing Activation
    Recomputation in Large Transformer Models", eq. 2) with the MLP term redone for SwiGLU: per token
    11·h (attention) + 4·h (norms) + 3·h + 8·I (SwiGLU input, gate, up, silu and product outputs at inner size I;
    the paper's 19·h is GPT's 4h GeLU MLP) + 5·a·s (the attention matrix, dropped with fused/flash attention)
    bytes at 16-bit, doubled for fp32; with gradient_checkpointing only each layer's input (2·h) is kept, plus
    one layer's activations being recomputed. Attention with flash/fused kernels keeps no score matrix, but a
    grouped-query call that no CUDA kernel takes grouped (masked, or fp32; core.model.model.sdpa_attention)
    keeps K/V repeated to every head, 4·(a−k)·d bytes (a query heads, k kv heads, head dim d), and a masked call
    (on-policy RL's left-padded rows) its mask as an additive bias, 2·s bytes a token; CPU's kernel needs neither.
    The logits: the model's output, its shifted fp32 copy, the log-softmax the cross-entropy keeps and their
    gradients, about 5·b·s·V·4 bytes (measured on CPU, docs/studio.md). The sequence is the packed window
    (`data.seq_len`) for the pretrain record kind, else `data.max_len`.
    Methods with a frozen reference hold it (+4 bytes a parameter); a teacher adds 4 bytes a teacher parameter,
    plus its fp32 logits b·s·V·4. Methods that generate train on batch × num_generations rows (GRPO, agent) of
    prompt + generated tokens, and the frozen reference (and a critic) run over the same rows (`rollout`). A CUDA
    run (`on_cuda`; None: `device` cuda, or auto where torch sees a GPU) adds the CUDA context and cuBLAS
    workspace, about 0.5 GB a GPU (`runtime`). Under DDP the gradients are views into its all-reduce buckets
    (gradient_as_bucket_view), so the buckets are the gradients' 4 bytes a parameter, not a second copy.
    """
    from core.methods import get_method

    m = config["model"]
    if on_cuda is None:
        device = config.get("device") or "auto"
        on_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    method = config.get("method", "pretrain")
    spec = get_method(method)
    n_gpus = max(1, int(config.get("n_gpus") or 1))
    data = config.get("data") or {}
    kind = resolve_data_kind(method, data.get("files") or [])
    seq = int(data.get("seq_len" if kind == "pretrain" else "max_len", 512))
    b = max(1, int(config.get("batch_size", 16)) // n_gpus)
    h, layers, heads, vocab = m["hidden_size"], m["num_hidden_layers"], m["num_attention_heads"], m["vocab_size"]
    precision = config.get("precision", "auto")
    act_bytes = 4 if precision == "fp32" else 2  # "auto" trains in bf16/fp16 on GPU
    trainable = params
    opts = _options_for_estimate(spec, config.get("method_options") or {})
    if hasattr(opts, "trainable_params"):  # a method that trains part of the model (LoRA's adapters)
        trainable = opts.trainable_params(m)
    weights = 4 * params
    grads_adam = 12 * trainable
    group = 1
    if spec.generates:  # rollouts: prompt + completion (every turn of an agent episode), G rows per prompt
        seq = opts.max_prompt_len + getattr(opts, "max_turns", 1) * opts.max_new_tokens
        group = getattr(opts, "num_generations", 1)
        b *= group
    inner = m.get("moe_intermediate_size") if m.get("use_moe") else m.get("intermediate_size")
    inner = inner or int(8 * h / 3)
    kv_heads, head_dim = m.get("num_key_value_heads") or heads, m.get("head_dim") or h // heads
    masked = spec.generates  # rollout rows: left-padded prompts, a padding mask in every forward
    if not m.get("flash_attn", True):
        attn_term = 5 * heads * seq  # the (b, a, s, s) scores and softmax of explicit attention
    elif on_cuda:  # CPU's fused kernel takes grouped K/V and a mask as they are
        repeated_kv = masked or precision == "fp32"
        attn_term = (4 * (heads - kv_heads) * head_dim if repeated_kv else 0) + (2 * seq if masked else 0)
    else:
        attn_term = 0
    per_token = 18 * h + 8 * inner + attn_term  # 16-bit bytes per token and layer
    if config.get("gradient_checkpointing"):
        activations = (layers * 2 * h + per_token) * seq * b * act_bytes / 2
    else:
        activations = layers * per_token * seq * b * act_bytes / 2
    logits = 5 * b * seq * vocab * 4
    reference = 4 * params if spec.reference else 0
    if spec.critic:
        reference += 16 * params  # the critic is trained too: weights, gradients and AdamW moments
    if spec.teacher:
        reference += 4 * teacher_params + b * seq * vocab * 4
    # the reference's log-probs over the rollout rows (fp32 logits), and the critic's activations as the policy's
    rollout = (b * seq * vocab * 4 if spec.generates and spec.reference else 0) + (activations if spec.critic else 0)
    runtime = 0.5e9 if on_cuda else 0
    total = weights + grads_adam + activations + logits + reference + rollout + runtime
    tokens = int(config.get("batch_size", 16)) * group * seq * int((config.get("optim") or {}).get("accumulation", 1))
    return {"weights": weights, "grads_adam": grads_adam, "activations": activations + logits,
            "reference": reference, "rollout": rollout, "runtime": runtime, "total": total,
            "tokens_per_step": tokens, "per_gpu_batch": b, "seq": seq}


# ---- the plan --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPlan:
    """What the run will do. Fields that need the data (steps) or the model (parameters, memory) stay None
    until they are known: `counted` adds the steps, `plan_from_setup` everything."""
    method: str
    data_kind: str
    device: str                          # "cpu", "cuda:0", "mps"
    precision: str                       # "fp32", "bf16", "fp16"
    precision_reason: str
    world_size: int = 1
    compile_pref: str = "auto"
    compile: bool | None = None          # for a run of total_steps from step 0 (see compile_for)
    compile_reason: str | None = None
    batches_per_epoch: int | None = None  # global micro-batches an epoch
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    params: int | None = None
    trainable_params: int | None = None
    memory: dict | None = None           # estimate_memory's bytes
    time: dict | None = None             # time_estimate's seconds (when a step was timed)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return DTYPES[self.precision]

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def compile_for(self, steps: int | None) -> tuple[bool, str]:
        """(compile or not, why) for `steps` optimizer steps still to run (None: not known yet)."""
        return resolve_compile(self.compile_pref, self.torch_device, steps, fixed_shapes=self.data_kind == "pretrain")

    def counted(self, cfg: TrainConfig, num_batches: int) -> RunPlan:
        """This plan with the steps of data holding `num_batches` global micro-batches an epoch."""
        per_epoch, total = step_counts(num_batches, cfg.optim.accumulation, cfg.max_steps, cfg.epochs,
                                       cfg.batch_size)
        compile_on, reason = self.compile_for(total)
        return dataclasses.replace(self, batches_per_epoch=num_batches, steps_per_epoch=per_epoch,
                                   total_steps=total, compile=compile_on, compile_reason=reason)

    def timed(self, model: dict, accumulation: int) -> RunPlan:
        """This plan with the wall time of its steps, from a few optimizer steps of `model` (a ModelConfig dict)
        timed here at the plan's batch, length, device and precision; unchanged where the method's step cannot
        be timed that way."""
        from core.train.calibration import measure_step_seconds, step_models

        factor = step_models(self.method)
        if factor is None or self.total_steps is None or not self.memory:
            return self
        seconds = measure_step_seconds(model, self.memory["per_gpu_batch"], self.memory["seq"], self.device,
                                       self.precision)
        return dataclasses.replace(self, time=time_estimate(self.total_steps, accumulation, seconds, factor))

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def table(self) -> str:
        """The plan for people: one aligned line per fact."""
        gb = lambda n: f"{n / 1e9:.2f} GB"  # noqa: E731
        rows = [("method", self.method), ("data kind", self.data_kind),
                ("device", self.device + (f" × {self.world_size} processes" if self.world_size > 1 else "")),
                ("precision", f"{self.precision} ({self.precision_reason})")]
        if self.compile is not None:
            rows.append(("torch.compile", f"{'on' if self.compile else 'off'} ({self.compile_reason})"))
        if self.total_steps is not None:
            rows += [("batches per epoch", f"{self.batches_per_epoch:,}"),
                     ("steps per epoch", f"{self.steps_per_epoch:,}"), ("total steps", f"{self.total_steps:,}")]
        if self.params is not None:
            rows.append(("parameters", f"{self.params:,} ({self.trainable_params:,} trained)"))
        if self.memory:
            m = self.memory
            rows.append(("memory", f"{gb(m['total'])} per device (weights {gb(m['weights'])}, gradients and AdamW "
                         f"{gb(m['grads_adam'])}, activations {gb(m['activations'])}, reference/teacher/critic "
                         f"{gb(m['reference'])}, rollouts {gb(m['rollout'])}; an estimate)"))
            rows.append(("tokens per step", f"{m['tokens_per_step']:,}"))
        if self.time:
            rows.append(("time", f"{self.time['seconds'] / 60:.1f} min ({self.time['step_seconds']:.3f} s a step)"))
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def plan_run(cfg: TrainConfig, device: torch.device | None = None, world_size: int = 1) -> RunPlan:
    """The plan of `cfg` before its data is read: device (`device`, when the caller resolved it already; else
    what `cfg.device` resolves to here), precision and data kind."""
    if device is None:
        device = torch.device(device_type(cfg.device))
    dtype, reason = resolve_precision(cfg.precision, device)
    return RunPlan(method=cfg.method, data_kind=resolve_data_kind(cfg.method, cfg.data.files), device=str(device),
                   precision=NAMES[dtype], precision_reason=reason, world_size=world_size, compile_pref=cfg.compile)


def _model_config(model: torch.nn.Module) -> dict:
    """The decoder's ModelConfig of a recipe's model (the model itself, or the first module inside it that is one:
    a policy beside its critic)."""
    from core.config.model import ModelConfig

    return next(m.config for m in model.modules() if isinstance(getattr(m, "config", None), ModelConfig)
                ).model_dump(mode="json")


def plan_from_setup(cfg: TrainConfig, log=print, timed: bool = False) -> RunPlan:
    """The whole plan, exact: the recipe builds its tokenizer, data (tokenizing into the token cache) and models as
    the run's set-up does, on the CPU and in a scratch folder, so the steps and parameter counts are the run's own.
    Nothing trains and nothing is written beside `data.cache_dir` (when set, the run reuses what was tokenized).
    `timed`: also time a few optimizer steps of the model on the run's device (core/train/calibration.py) for the
    wall-time estimate, where a short calibration can tell (not for methods that generate inside the step)."""
    import tempfile
    from pathlib import Path

    from core.data.formats import using_mappings, with_data_mappings
    from core.methods import get_recipe
    from core.train.recipe import RunContext, batches_per_epoch

    cfg = with_data_mappings(cfg)  # files in other formats are read as the run reads them
    plan = plan_run(cfg)
    with tempfile.TemporaryDirectory(prefix="minimind-dry-run-") as scratch:
        ctx = RunContext(run_dir=Path(scratch), device=torch.device("cpu"), autocast_dtype=plan.autocast_dtype,
                         log=log, warn=lambda message: log(f"warning: {message}"))
        recipe = get_recipe(cfg.method)(cfg, ctx)
        with using_mappings(cfg.data.mappings):
            recipe.setup()
        plan = plan.counted(cfg, batches_per_epoch(recipe))
        params = sum(p.numel() for p in recipe.model.parameters())
        trainable = sum(p.numel() for g in recipe.param_groups() for p in g["params"])
        teacher = getattr(recipe, "teacher", None)  # a method with `teacher` in the registry keeps it here
        teacher_params = sum(p.numel() for p in teacher.parameters()) if teacher is not None else 0
        config = {**cfg.model_dump(mode="json"), "model": _model_config(recipe.model),
                  "n_gpus": plan.world_size}
    memory = estimate_memory(config, params, teacher_params, on_cuda=plan.torch_device.type == "cuda")
    plan = dataclasses.replace(plan, params=params, trainable_params=trainable, memory=memory)
    return plan.timed(config["model"], cfg.optim.accumulation) if timed else plan
