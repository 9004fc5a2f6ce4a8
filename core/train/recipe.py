"""The recipe interface: one small file per training method, over the shared engine.

A recipe owns only what is unique to its method; the engine (core/train/engine.py) owns device, precision,
gradient accumulation, clipping, the LR schedule, DDP, checkpoints, resume, signals and events. As in torchtune,
a recipe wires reusable parts (core/data, core/model, core/rl) and keeps to a small interface; unlike torchtune
it gets its defaults from one base class, `Recipe`, whose defaults fit causal-LM methods with
{"input_ids", "labels"} batches. A method is one recipe file defining `RECIPE` (a `Recipe` subclass, or any
callable (cfg, ctx) -> Recipe, as the on-policy methods' `on_policy(...)`) plus one entry in the method registry
(core/methods.py: name, recipe module, option model, data kind, help).

The hooks (`HOOKS` below holds this table as data; tests/test_recipe_hooks.py holds it to the class):

| hook                                     | kind     | what it does                                                  |
|------------------------------------------|----------|---------------------------------------------------------------|
| setup()                                  | required | build self.tokenizer, self.model (on ctx.device), self.train_dataset (+ self.eval_dataset, extra models: reference, critic, teacher) |
| loss_fn(model, batch)                    | required | (loss tensor, {name: float or tensor}) of one micro-batch; `model` is the wrapped (DDP/compiled) self.model: call it, not self.model |
| collate(items)                           | optional | a batch from dataset items (default: stack every key)         |
| batch_sampler(dataset, epoch, skip_batches, shuffle) | optional | this rank's index lists in a (seed, epoch) order, skipping `skip_batches`; its len() with skip 0 is the global micro-batches of an epoch (default: packed windows) |
| loss_weight(batch)                       | optional | how much the micro-batch counts in the step's mean (default: its tokens with a label; 1.0 for a plain per-batch mean) |
| useful_tokens(batch)                     | optional | non-pad tokens processed, for tokens_per_s (default: attention_mask's sum, else every input id) |
| param_groups()                           | optional | optimizer groups, e.g. a critic with its own lr (default: every trainable parameter of self.model) |
| save_weights(ckpt_dir)                   | optional | the model files of a checkpoint (default: core.model.io)      |
| load_weights(ckpt_dir)                   | optional | read them back; the engine calls it on resume, after setup    |
| extra_state()                            | optional | anything else to checkpoint (rollout caches, value trackers): plain data (tensors, numbers, strings, lists, dicts), copies, never live objects |
| load_extra_state(state)                  | optional | restore it on resume                                          |
| on_step_end(step, metrics)               | optional | after each optimizer step (emit samples, update a tracker)    |
| evaluate(model, batches)                 | optional | {"eval/...": (weighted sum, weight)} over this rank's held-out batches (default: token-weighted loss) |

Provided, to call from `setup` (not to override): `load_tokenizer()`, `build_model()`, `build_reference(policy,
path)` — on resume they read the run's own checkpoint, never `init` (which may have been deleted since).
`self.options` is cfg.method_options validated by the registry's option model (None when it has none);
`self.ctx` is the RunContext below.

RL methods that generate inside the step do so in `loss_fn` (under torch.no_grad for the rollout), with batches of
prompts (core/train/recipes/onpolicy.py); the engine still does backward, accumulation, clipping and the step.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from core.config.train import TrainConfig
from core.data.sources import is_source


class Hook(NamedTuple):
    name: str
    required: bool
    does: str


HOOKS: tuple[Hook, ...] = (
    Hook("setup", True, "build the tokenizer, model, datasets and extra models"),
    Hook("loss_fn", True, "the loss and metrics of one micro-batch"),
    Hook("collate", False, "a batch from dataset items"),
    Hook("batch_sampler", False, "this rank's index lists of an epoch; len() = global micro-batches"),
    Hook("loss_weight", False, "how much a micro-batch counts in the step's mean"),
    Hook("useful_tokens", False, "non-pad tokens processed, for tokens_per_s"),
    Hook("param_groups", False, "the optimizer's parameter groups"),
    Hook("save_weights", False, "the model files of a checkpoint"),
    Hook("load_weights", False, "read the model files back on resume"),
    Hook("extra_state", False, "other state to checkpoint, as plain data"),
    Hook("load_extra_state", False, "restore that state on resume"),
    Hook("on_step_end", False, "after each optimizer step"),
    Hook("evaluate", False, "held-out metrics as (weighted sum, weight)"),
)
PROVIDED = ("load_tokenizer", "build_model", "build_reference")  # helpers for `setup`: call them, don't override


def _no_event(type: str, step: int, **fields: Any) -> None:
    pass


@dataclass
class RunContext:
    """What the engine tells a recipe about the run."""
    run_dir: Path
    device: torch.device
    rank: int = 0
    world_size: int = 1
    autocast_dtype: torch.dtype | None = None
    log: Callable[[str], None] = print     # human log line (stderr)
    warn: Callable[[str], None] = print    # warning event + log
    emit: Callable[..., Any] = _no_event   # emit(type, step, **fields): the recipe's own events (RL `sample`)
    resume_from: Path | None = None        # on resume: the run's newest checkpoint; build the model from it

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class Recipe:
    def __init__(self, cfg: TrainConfig, ctx: RunContext):
        from core.methods import validate_options

        self.cfg, self.ctx = cfg, ctx
        self.options = validate_options(cfg.method, cfg.method_options)
        if ctx.resume_from is None and ctx.is_main:  # pre-flight's warning of a rate that undoes the init run
            from core.methods import default_warnings

            for key, text in default_warnings(cfg.model_dump(mode="json"), far=False).items():
                ctx.warn(f"{key}: {text}")
        self.model: nn.Module | None = None
        self.tokenizer = None
        self.train_dataset = None
        self.eval_dataset = None

    # ---- required --------------------------------------------------------------------------------------
    def setup(self) -> None:
        raise NotImplementedError(f"{type(self).__name__}.setup")

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError(f"{type(self).__name__}.loss_fn")

    # ---- data ------------------------------------------------------------------------------------------
    def collate(self, items: list[dict]) -> dict:
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}

    def batch_sampler(self, dataset, epoch: int, skip_batches: int, shuffle: bool = True):
        from core.train.sampler import PackedBatchSampler

        return PackedBatchSampler(len(dataset), self.cfg.batch_size, self.cfg.seed, epoch, self.ctx.rank,
                                  self.ctx.world_size, skip_batches, shuffle=shuffle)

    def loss_weight(self, batch: dict) -> float:
        labels = batch.get("labels") if isinstance(batch, dict) else None
        if labels is None:
            return 1.0
        return float((labels[:, 1:] != -100).sum())

    def useful_tokens(self, batch: dict) -> int:
        if not isinstance(batch, dict):
            return 0
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        return int(batch["input_ids"].numel()) if "input_ids" in batch else 0

    # ---- building the models: the one place that decides between init and the run's own checkpoint -----
    def load_tokenizer(self):
        return load_tokenizer_for(self.cfg, self.ctx.resume_from)

    def build_model(self) -> nn.Module:
        """The starting model, on the CPU: see `build_model` below."""
        return build_model(self.cfg, self.tokenizer, self.ctx.resume_from)

    def build_reference(self, policy: nn.Module, path: str | None) -> nn.Module:
        """The frozen reference: on resume an empty model shaped like the saved one (load_weights fills it from
        the checkpoint's reference.safetensors); else the checkpoint at `path`, else a copy of `policy`."""
        return frozen_reference(policy, None if self.ctx.resume_from is not None else path, self.ctx,
                                self.ctx.resume_from)

    # ---- parameters and checkpoints --------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    def save_weights(self, ckpt_dir: Path) -> None:
        from core.model import io

        io.save_checkpoint(self.model, ckpt_dir, tokenizer=self.tokenizer)

    def load_weights(self, ckpt_dir: Path) -> None:
        from core.model import io

        io.load_weights_into(self.model, io.read_weights(ckpt_dir / io.WEIGHTS), str(ckpt_dir / io.WEIGHTS))

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def on_step_end(self, step: int, metrics: dict) -> None:
        pass

    def evaluate(self, model: nn.Module, batches) -> dict:
        """{name: (weighted sum, weight)} over this rank's `batches`; the engine sums both over ranks and
        reports sum/weight (here: the token-weighted mean loss as `eval/loss`)."""
        total, weight = 0.0, 0.0
        for batch in batches:
            loss, _ = self.loss_fn(model, batch)
            w = self.loss_weight(batch)
            total, weight = total + float(loss) * w, weight + w
        return {"eval/loss": (total, weight)}


def batches_per_epoch(recipe: Recipe) -> int:
    """Global micro-batches in one epoch of the recipe's training data (its sampler's length with nothing skipped)."""
    return len(recipe.batch_sampler(recipe.train_dataset, 0, 0))


def causal_lm_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
    """Next-token cross-entropy over the labels != -100 (plus the MoE aux loss), for {"input_ids", "labels"}."""
    out = model(batch["input_ids"], labels=batch["labels"])
    return out.loss, {"aux_loss": out.aux_loss}


# ---- shared building blocks for recipes ------------------------------------------------------------------

def load_tokenizer_for(cfg: TrainConfig, resume_from: Path | None = None):
    """The run's tokenizer: on resume the one stored with the run's own checkpoint (`resume_from`); else
    `data.tokenizer` when given, else the one stored with the init checkpoint."""
    from core.model import io
    from core.tokenizer import MiniMindTokenizer

    if resume_from is not None and (Path(resume_from) / io.TOKENIZER_DIR / "tokenizer.json").is_file():
        return io.load_tokenizer(resume_from)
    if cfg.data.tokenizer:
        path = Path(cfg.data.tokenizer)
        if not (path / "tokenizer.json").is_file():
            raise ValueError(f"data.tokenizer: {path} has no tokenizer.json; train one with "
                             "`minimind tokenizer train` or point at a checkpoint's tokenizer/ folder")
        return MiniMindTokenizer.load(path)
    if cfg.init:
        return io.load_tokenizer(io.resolve_checkpoint(cfg.init))
    raise ValueError("data.tokenizer: no tokenizer given; set data.tokenizer (a tokenizer folder) or init")


def build_model(cfg: TrainConfig, tokenizer, resume_from: Path | None = None) -> nn.Module:
    """A fresh model from `cfg.model` (preset name or config), or the init checkpoint's weights. On resume
    (`resume_from`: a checkpoint of this run) the architecture comes from that checkpoint and `init` is not read:
    it may have moved on since; the engine then loads the checkpoint's weights (`Recipe.load_weights`)."""
    from core.config.model import ModelConfig, get_preset
    from core.model import MiniMindForCausalLM, io

    if resume_from is not None:
        model = MiniMindForCausalLM(io.read_model_config(resume_from))
        model.train()
        return model
    if cfg.init:
        model, _ = io.load_model(cfg.init, with_tokenizer=False)
        model.train()
        return model
    spec = cfg.model if cfg.model is not None else "small"
    vocab = tokenizer.vocab_size
    if isinstance(spec, str):
        mcfg = get_preset(spec, vocab_size=vocab)
    else:
        mcfg = spec if spec.vocab_size == vocab else ModelConfig(**{**spec.model_dump(), "vocab_size": vocab})
    return MiniMindForCausalLM(mcfg)


def data_cache_dir(cfg: TrainConfig, run_dir: Path) -> Path:
    return Path(cfg.data.cache_dir) if cfg.data.cache_dir else run_dir / "cache"


def require_files(cfg: TrainConfig) -> list[str]:
    if not cfg.data.files:
        raise ValueError("data.files: no training files given; set data.files (or --data FILE)")
    missing = [f for f in cfg.data.files if not is_source(f)]
    if missing:
        raise ValueError(f"data.files: {missing[0]} does not exist")
    return list(cfg.data.files)


REFERENCE_FILE = "reference.safetensors"
REFERENCE_CONFIG = "reference_config.json"


def frozen_reference(policy: nn.Module, path: str | None, ctx: RunContext, resume_from: Path | None = None):
    """A frozen reference model: eval mode, no grad, fp32 weights run under the training autocast (as the policy).
    On resume (`resume_from`) its shape comes from the checkpoint (weights follow in `load_reference`); else it is
    the checkpoint at `path`, else a copy of the starting policy."""
    import copy

    from core.model import MiniMindForCausalLM, io

    if resume_from is not None and (Path(resume_from) / REFERENCE_CONFIG).is_file():
        from core.config.model import ModelConfig

        model = MiniMindForCausalLM(ModelConfig.load(Path(resume_from) / REFERENCE_CONFIG)).to(ctx.device)
    elif path:
        model, _ = io.load_model(path, device=ctx.device, with_tokenizer=False)
    else:
        model = copy.deepcopy(policy)
    # fp32 weights like the policy's, run under the same autocast: a copy cast to bf16 keeps its residual stream
    # and norms in bf16 while the policy's stay fp32, so KL and DPO margins were not 0 at step 0
    return model.float().eval().requires_grad_(False)


def save_reference(reference: nn.Module, ckpt_dir: Path) -> None:
    """The reference travels with each checkpoint (weights + config), so a resume never reads `init` again."""
    from safetensors.torch import save_file

    from core.model import io

    save_file(io.model_state_dict(reference), str(ckpt_dir / REFERENCE_FILE), metadata={"format": "pt"})
    reference.config.save(ckpt_dir / REFERENCE_CONFIG)


def load_reference(reference: nn.Module, ckpt_dir: Path) -> None:
    from core.model import io

    path = ckpt_dir / REFERENCE_FILE
    if not path.is_file():
        raise io.CheckpointError(f"{path}: missing; this checkpoint of a method with a reference model has no "
                                 "reference weights")
    dtype = next(reference.parameters()).dtype
    io.load_weights_into(reference, io.read_weights(path), str(path))
    reference.to(dtype).requires_grad_(False)
