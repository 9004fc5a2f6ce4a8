"""The recipe interface: one small file per training method, over the shared engine (torchtune style).

A recipe owns only what is unique to its method; the engine (core/train/engine.py) owns device, precision,
gradient accumulation, clipping, the LR schedule, DDP, checkpoints, resume, signals and events.

Write a method as one recipe file defining `RECIPE = MyRecipe` (a subclass of `Recipe`) plus one entry in the
method registry (core/methods.py: name, recipe module, option model, data kind, help). What a recipe provides:

    class MyRecipe(Recipe):
        def setup(self):               # build self.tokenizer, self.model (on self.ctx.device), self.train_dataset
            ...                        # (+ optional self.eval_dataset); extra models (reference, critic) too.
                                       # Build them with self.load_tokenizer(), self.build_model() and
                                       # self.build_reference(): on resume these read the run's own checkpoint
                                       # and never `init` (which may have been deleted since)
        def loss_fn(self, model, batch):     # -> (loss tensor, {name: float|tensor}); `model` is the wrapped
            ...                              #    (DDP/compiled) self.model: call it, not self.model, for DDP

    `self.options` is cfg.method_options validated by the registry's option model (None when it has none).

    Optional overrides (defaults in `Recipe` fit causal-LM methods with {"input_ids", "labels"} batches):
        collate(items) -> batch                    batch_sampler(epoch, skip_batches) -> index lists of this rank
        num_batches() -> global micro-batches per epoch
        loss_weight(batch) -> float                how much this micro-batch counts in the step's mean (tokens with
                                                   a label by default; return 1.0 for a plain per-batch mean)
        useful_tokens(batch) -> int                non-pad tokens processed (for tokens_per_s)
        param_groups() -> [{"params": [...], "lr": ...}]   e.g. a critic with its own LR (default: trainable params)
        save_weights(ckpt_dir) / load_weights(ckpt_dir)     model files of a checkpoint (default: core.model.io);
                                                            the engine calls load_weights on resume, after setup
        extra_state() -> dict / load_extra_state(dict)      anything else to checkpoint (rollout caches, value
                                                            trackers). Plain data only: tensors, numbers, strings,
                                                            lists, dicts — the weights-only loader refuses
                                                            anything else — and copies, never the live objects
        on_step_end(step, metrics)                 after each optimizer step (refresh an old policy, update a tracker)
        evaluate(model, batches) -> {"eval/...": (sum, weight)}

RL methods that generate inside the step do so in `loss_fn` (under torch.no_grad for the rollout), with batches of
prompts (core/train/recipes/onpolicy.py); the engine still does backward, accumulation, clipping and the step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.config.train import TrainConfig
from core.data.sources import is_source


@dataclass
class RunContext:
    """What the engine tells a recipe about the run."""
    run_dir: Path
    device: torch.device
    rank: int = 0
    world_size: int = 1
    autocast_dtype: torch.dtype | None = None
    log: Any = print                       # human log line (stderr)
    warn: Any = print                      # warning event + log
    resume_from: Path | None = None        # on resume: the run's newest checkpoint; build the model from it
    extras: dict = field(default_factory=dict)

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

    # ---- to implement ----------------------------------------------------------------------------------
    def setup(self) -> None:
        raise NotImplementedError

    def loss_fn(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict]:
        out = model(batch["input_ids"], labels=batch["labels"])
        return out.loss, {"aux_loss": out.aux_loss}

    # ---- data ------------------------------------------------------------------------------------------
    def collate(self, items: list[dict]) -> dict:
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}

    def batch_sampler(self, dataset, epoch: int, skip_batches: int, shuffle: bool = True):
        from core.train.sampler import PackedBatchSampler

        return PackedBatchSampler(len(dataset), self.cfg.batch_size, self.cfg.seed, epoch, self.ctx.rank,
                                  self.ctx.world_size, skip_batches, shuffle=shuffle)

    def num_batches(self) -> int:
        return self.batch_sampler(self.train_dataset, 0, 0).num_batches()

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

    def dataset_tokens(self) -> int | None:
        return getattr(self.train_dataset, "num_tokens", None)

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
