"""The training engine: everything a method has in common, around a recipe's `loss_fn`.

Owns: device and precision (bf16/fp16 autocast, GradScaler for fp16 only), gradient accumulation (DDP `no_sync`
on all but the last micro-step), token-weighted loss averaging across micro-batches and ranks, grad-norm
clipping, AdamW (fused on CUDA), the LR schedule, DDP under torchrun, checkpoints and exact resume, SIGTERM/SIGINT
(checkpoint at the next step boundary, status `stopped`, exit 0), NaN/Inf detection (error event, exit 3), and
the event stream (core/train/events.py, docs/events.md).

Before the first step comes set-up: the run folder and config.json are written first (so `--resume` works on a
run stopped or killed at any later point), then the recipe builds its datasets and models. Tokenizing a corpus
into the token cache can take most of an hour: it reports `prepare` events and stderr lines, and stops at the next
batch on SIGTERM, keeping the finished shards (core/data/cache_build.py). Every other set-up phase (loading a
reference or teacher model, the cache's lock wait) and a single-process evaluation are interrupted at once by a
SIGTERM; in all of them the run ends with `run_finished` status `stopped`, exit 0.

Exit codes: 0 completed or stopped, 1 failed (bad config, data or checkpoint; the message says why), 3 the
loss became NaN/Inf (the last good checkpoint is kept).
"""
from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import traceback
import uuid
from pathlib import Path

import numpy as np
import torch

from core.config.train import TrainConfig, save_train_config
from core.data.formats import using_mappings, with_data_mappings
from core.device import resolve_device
from core.precision import NAMES, autocast, configure_backends
from core.preparation import Preparation, PreparationStopped, PrepareProgress, describe_prepare, preparing
from core.process_identity import process_start_ticks
from core.train import checkpoint as ckpt_mod
from core.train import distributed as dist
from core.train.events import EventLog, log
from core.train.compile import is_compile_error
from core.train.plan import plan_run
from core.train.recipe import RunContext
from core.train.trainer_state import check_plain, load_trainer_state, rng_state, set_rng_state
from core.train.trackers import open_trackers
from core.train.schedule import lr_factor

EXIT_OK, EXIT_FAILED, EXIT_NONFINITE = 0, 1, 3


class NonFiniteLoss(Exception):
    pass


class RunStopped(BaseException):
    """Raised by the signal handler in a phase with no step boundary to wait for (set-up, an evaluation).
    A BaseException, as KeyboardInterrupt is: a recipe's `except Exception` must not swallow a stop."""


PREPARE_LOG_EVERY_S = 10.0  # stderr lines while preparing data (events go out every second)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def rank_processes() -> list[dict]:
    """``{"rank", "pid", "pid_start_ticks"}`` of every rank, so the studio can signal each one (torchrun starts
    them in sessions of their own). A collective: every rank calls it, as every rank evaluates run_started's
    fields (only rank 0 writes the event)."""
    return dist.gather_objects({"rank": dist.world()[0], "pid": os.getpid(), "pid_start_ticks": process_start_ticks()})


def _is_user_error(exc: BaseException) -> bool:
    """Errors whose message is written for people (no traceback needed): config, data, checkpoint, files."""
    from core.data import DataError
    from core.model.io import CheckpointError as ModelCheckpointError

    return isinstance(exc, (ValueError, OSError, DataError, ckpt_mod.CheckpointError, ModelCheckpointError))


def _is_lost_peer(exc: BaseException) -> bool:
    """A collective that failed because another process went away (gloo/NCCL connection errors, timeouts)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, torch.distributed.DistError) or any(
        s in text for s in ("connection reset", "connection closed", "broken pipe", "gloo", "nccl", "timed out"))


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg, self.resume = cfg, resume
        self.rank, self.local_rank, self.world_size = dist.world()
        self.stop_requested = False
        self._interruptible = False  # a signal raises RunStopped at once (set-up, a single-process evaluation)
        self._preparation = Preparation(report=self._report_preparation, should_stop=lambda: self.stop_requested)
        self._prepare_logged = 0.0
        # stdout-only until the run folder exists: a failure before that (device, dist init, mkdir) still
        # reaches the studio as `error` + `run_finished failed`
        self.events = EventLog(None, enabled=self.rank == 0)
        self._pending_warnings: list[str] | None = []  # set-up warnings wait for run_started

    # ---- signals ---------------------------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        if self.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.stop_requested = True
        name = signal.Signals(signum).name
        if self._preparation.cooperative:  # tokenizing: it stops after the batch in hand, keeping its shards
            log(f"received {name}: stopping data preparation (finished shards are kept)")
        elif self._interruptible:
            log(f"received {name}: stopping now")
            self._interruptible = False  # raised once; what follows (the stop event) must not be interrupted
            raise RunStopped(name)
        else:
            log(f"received {name}: saving a checkpoint at the next step boundary")

    @contextlib.contextmanager
    def _stoppable_at_once(self):
        """A phase without step boundaries: a stop signal raises RunStopped inside it (see `_on_signal`)."""
        if self.stop_requested:
            raise RunStopped("stop requested")
        before, self._interruptible = self._interruptible, True
        try:
            yield
        finally:
            self._interruptible = before

    def _report_preparation(self, progress: PrepareProgress) -> None:
        fields = progress.fields()
        self.events.emit("prepare", getattr(self, "step", 0), **fields)
        now = time.monotonic()
        if self.rank == 0 and (progress.state != "running" or now - self._prepare_logged >= PREPARE_LOG_EVERY_S):
            self._prepare_logged = now
            log(describe_prepare(fields, detail=True))

    def _install_signals(self) -> dict:
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (e.g. embedded use): no handlers
                pass
        return old

    # ---- entry -----------------------------------------------------------------------------------------
    def run(self) -> int:
        old_handlers = self._install_signals()
        step = 0
        try:
            with self._stoppable_at_once():
                self._setup()
            return self._train()
        except (RunStopped, PreparationStopped) as exc:
            self._interruptible = False
            self._flush_warnings()
            where = "while preparing data; the finished part of the token cache is kept" \
                if isinstance(exc, PreparationStopped) else "during set-up, before the first step"
            resume = f"; resume with --resume {self.run_dir}" if getattr(self, "run_dir", None) else ""
            self.events.emit("run_finished", getattr(self, "step", 0), status="stopped",
                             message=f"stopped by signal {where}{resume}")
            return EXIT_OK
        except NonFiniteLoss as exc:
            self._flush_warnings()
            self.events.error(exc.args[0], exc.args[1])
            self.events.emit("run_finished", exc.args[0], status="failed", message=exc.args[1])
            return EXIT_NONFINITE
        except Exception as exc:  # every failure becomes an event the studio can show
            step = getattr(self, "step", 0)
            if _is_user_error(exc):  # bad config, data or checkpoint: the message says what to do
                message = str(exc)
            elif self.world_size > 1 and _is_lost_peer(exc):
                message = (f"a rank or node of this {self.world_size}-process run was lost ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); resume it from its last checkpoint "
                           f"with --resume {getattr(self, 'run_dir', 'RUN_DIR')}")
            else:
                message = f"{type(exc).__name__}: {exc}"
                log(f"rank {self.rank}: {traceback.format_exc()}" if self.world_size > 1 else traceback.format_exc())
                self._report_from_this_rank(step, message)
            self._flush_warnings()
            self.events.error(step, message)
            self.events.emit("run_finished", step, status="failed", message=message)
            return EXIT_FAILED
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            self.events.close()
            dist.shutdown()

    def _report_from_this_rank(self, step: int, message: str) -> None:
        """A rank other than 0 that fails unexpectedly (a bug, out of memory on its GPU) writes the failure into
        the run's events itself: rank 0 is then blocked in a collective waiting for it, until torchrun kills the
        group, and would never write `run_finished`. (Config and data errors hit rank 0 too; it reports those.)"""
        run_dir = getattr(self, "run_dir", None)
        if self.rank == 0 or run_dir is None:
            return
        events = EventLog(run_dir, enabled=True, stdout=False)
        try:
            events.error(step, f"rank {self.rank}: {message}")
            events.emit("run_finished", step, status="failed", message=f"rank {self.rank}: {message}")
        finally:
            events.close()

    # ---- set-up ----------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.device in ("auto", "cuda"):  # read by the CUDA caching allocator at its first allocation
            os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # less fragmentation
        self.device = resolve_device(cfg.device, self.local_rank)
        dist.init(self.device.type)
        if cfg.batch_size % self.world_size:
            raise ValueError(f"batch_size: {cfg.batch_size} is not a multiple of the {self.world_size} processes")
        run_dir = Path(cfg.run_dir) if cfg.run_dir else dist.broadcast_object(default_run_dir(cfg))
        self.run_dir = run_dir
        if self.rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        self.events.close()
        # the trackers (TensorBoard, wandb, MLflow) are sinks of the same events, on rank 0 alone
        self.events = EventLog(run_dir, enabled=self.rank == 0,
                               sinks=open_trackers(cfg.log, run_dir) if self.rank == 0 else ())
        if not self.resume and ckpt_mod.list_checkpoints(run_dir):
            raise ValueError(f"run_dir: {run_dir} already has checkpoints; resume it with --resume {run_dir} "
                             "or choose a new run_dir")
        self.cfg = cfg = with_data_mappings(cfg)  # the run records how each file's rows were read
        if self.rank == 0 and not (self.resume and (run_dir / "config.json").is_file()):
            # first, before any long phase: a run stopped or killed from here on can be resumed
            save_train_config(cfg.model_copy(update={"run_dir": str(run_dir)}), run_dir / "config.json")
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.plan = plan_run(cfg, self.device, self.world_size)  # precision and data kind; steps once data is read
        self.autocast_dtype, self.precision_reason = self.plan.autocast_dtype, self.plan.precision_reason
        configure_backends(self.device)
        seed_everything(cfg.seed)  # same on every rank: identical initial weights
        # on resume the model is rebuilt from the run's own checkpoint, never from `init` (which may have moved)
        resume_from = next((c for c in ckpt_mod.resume_candidates(run_dir) if (c / "model_config.json").is_file()),
                           None) if self.resume else None
        self.ctx = RunContext(run_dir=run_dir, device=self.device, rank=self.rank, world_size=self.world_size,
                              autocast_dtype=self.autocast_dtype, log=log, resume_from=resume_from,
                              warn=self._warn,
                              extras={"emit": self.events.emit})  # recipes' own events (RL `sample`)
        from core.train import get_recipe

        self.recipe = get_recipe(cfg.method)(cfg, self.ctx)
        # Every rank sets up at once, with no collective around it: one process tokenizes each cache entry while
        # the others wait on the entry's lock file (core/data/cache.py), however long that takes; a barrier
        # here would hit the NCCL watchdog's timeout on a large corpus.
        with preparing(self._preparation), using_mappings(cfg.data.mappings):
            self.recipe.setup()
        self.model = self.recipe.model
        if cfg.gradient_checkpointing:
            from core.model.model import set_gradient_checkpointing

            set_gradient_checkpointing(self.model, True)
        groups = self.recipe.param_groups()
        for g in groups:
            g.setdefault("lr", cfg.optim.lr)
            g["base_lr"] = g["lr"]
        self.params = [p for g in groups for p in g["params"]]
        if not self.params:
            raise ValueError(f"method {cfg.method}: the model has no trainable parameters")
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                                           fused=self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype == torch.float16)
        self.plan = self.plan.counted(cfg, self.recipe.num_batches())
        self.num_batches, self.steps_per_epoch = self.plan.batches_per_epoch, self.plan.steps_per_epoch
        self.total_steps = self.plan.total_steps
        self.step, self.epoch, self.batch_pos, self.resumed_from, self._resume_rng = 0, 0, 0, None, None
        if self.resume:
            self._load_resume_state()
        self.train_model = self._wrap(self.model)
        if self._resume_rng is None:
            seed_everything(cfg.seed + self.rank)  # per-rank streams for dropout and sampling
        else:
            set_rng_state(self._resume_rng, self.device)

    def _flush_warnings(self) -> None:
        for message in self._pending_warnings or []:
            self.events.emit("warning", getattr(self, "step", 0), message=message)
        self._pending_warnings = None

    def _warn(self, message: str) -> None:
        if self._pending_warnings is None:
            self.events.warning(getattr(self, "step", 0), message)
        else:
            log(f"warning: {message}")
            self._pending_warnings.append(message)

    def _wrap(self, model):
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # RoPE tables are buffers computed identically everywhere: no need to broadcast them each step
            model = DDP(model, device_ids=[self.local_rank] if self.device.type == "cuda" else None,
                        broadcast_buffers=False, gradient_as_bucket_view=True)
        self._eager_model = model
        compile_on, reason = self.plan.compile_for(self.total_steps - self.step)  # the steps still to run
        if compile_on:
            log(f"torch.compile: {reason}")
            try:
                model = torch.compile(model)
            except Exception as exc:  # an unknown backend or option fails here; tracing fails at the first step
                self._compile_failed(exc)
        return model

    def _compile_failed(self, exc: BaseException) -> None:
        self.train_model = self._eager_model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        self._warn(f"compile: torch.compile failed ({type(exc).__name__}: {first[:300]}); training continues eagerly")

    def _step(self, micro: list) -> dict:
        """One optimizer step. A compiled model compiles lazily (its first forward and backward, and again for
        new shapes); when that fails the step is redone eagerly and the run goes on eagerly, with a warning."""
        if self.train_model is self._eager_model:
            return self._optimizer_step(micro)
        try:
            return self._optimizer_step(micro)
        except Exception as exc:
            if not is_compile_error(exc):
                raise
            self.optimizer.zero_grad(set_to_none=True)
            self._compile_failed(exc)
            return self._optimizer_step(micro)

    def _load_resume_state(self) -> None:
        candidates = ckpt_mod.resume_candidates(self.run_dir)
        if not candidates:
            self._warn(f"{self.run_dir}: no checkpoint yet; starting the run from step 0")
            self.resumed_from = 0  # tells the studio to drop the steps it kept from the earlier attempt
            return
        for ckpt in candidates:
            try:
                state = ckpt_mod.verify_checkpoint(ckpt)
                trainer_state = load_trainer_state(ckpt / ckpt_mod.TRAINER_FILE)
                self.recipe.load_weights(ckpt)
            except Exception as exc:  # verify, unpickling and safetensors header errors alike
                self._warn(f"{ckpt.name}: cannot resume from it ({exc}); trying an older checkpoint")
                continue
            # load_state_dict restores the saved lr/base_lr/betas/weight_decay; `--resume --set optim.lr=...`
            # must win, so this run's fresh hyperparameters go back on top (the moments are kept)
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict(trainer_state["optimizer"])
            for g, f in zip(self.optimizer.param_groups, fresh):
                g.update(f)
            self._load_scaler(trainer_state.get("scaler") or {})
            saved_precision = trainer_state.get("precision")
            if saved_precision and saved_precision != self._precision_name():
                self._warn(f"precision: the run was trained in {saved_precision} and continues in "
                           f"{self._precision_name()}; the weights and optimizer moments carry over unchanged (fp32)")
            ranks = trainer_state.get("recipe_ranks")  # per rank since 2026-12; before, rank 0's only
            same_world = isinstance(ranks, list) and len(ranks) == self.world_size
            self.recipe.load_extra_state(ranks[self.rank] if same_world else trainer_state.get("recipe", {}))
            rngs = trainer_state.get("rng", [])
            if len(rngs) != self.world_size:
                self._warn(f"resuming with {self.world_size} processes, saved with {len(rngs)}: "
                                       "data order is kept, dropout RNG streams restart")
            self._resume_rng = rngs[self.rank] if self.rank < len(rngs) else rng_state(self.device)
            self.step, self.epoch, self.batch_pos = state["step"], state["epoch"], state["batch_in_epoch"]
            self.resumed_from = self.step
            log(f"resuming {self.run_dir} from {ckpt.name} (epoch {self.epoch}, batch {self.batch_pos})")
            return
        raise ckpt_mod.CheckpointError(f"{self.run_dir}: no usable checkpoint (all {len(candidates)} are incomplete "
                                       "or corrupt, see the warnings above); start a new run")

    def _load_scaler(self, saved: dict) -> None:
        """The GradScaler's state, across a precision change: fp16 after fp32/bf16 starts a fresh scale (there
        is none saved), and fp32/bf16 after fp16 drops the saved one (nothing scales any more)."""
        if self.scaler.is_enabled() and saved:
            self.scaler.load_state_dict(saved)
        elif self.scaler.is_enabled():
            self._warn("precision: resumed as fp16 from a run without loss scaling; the GradScaler starts afresh")

    def _precision_name(self) -> str:
        return NAMES[self.autocast_dtype]

    # ---- the loop --------------------------------------------------------------------------------------
    def _train(self) -> int:
        cfg = self.cfg
        raw = self.model
        self.run_id = self.run_dir.name
        self.events.emit("run_started", self.step, run_id=self.run_id, method=cfg.method,
                         config=cfg.model_dump(mode="json"), world_size=self.world_size, device=str(self.device),
                         precision=self._precision_name(), precision_reason=self.precision_reason,
                         params=sum(p.numel() for p in raw.parameters()),
                         trainable_params=sum(p.numel() for p in self.params),
                         dataset_tokens=self.recipe.dataset_tokens(), total_steps=self.total_steps,
                         steps_per_epoch=self.steps_per_epoch, resumed_from=self.resumed_from, pid=os.getpid(),
                         pid_start_ticks=process_start_ticks(), ranks=rank_processes())
        self._flush_warnings()
        last_saved = self.step if self.resumed_from is not None else -1
        if dist.any_rank(self.stop_requested, self.device):  # stopped while loading data: nothing new to save
            self.events.emit("run_finished", self.step, status="stopped", message=f"stopped by signal before step "
                             f"{self.step + 1}; resume with --resume {self.run_dir}")
            return EXIT_OK
        self._tokens, self._t_log = 0, time.perf_counter()
        while self.step < self.total_steps:
            loader = self._loader(self.epoch, self.batch_pos)
            while self.step < self.total_steps:
                micro = [b for _, b in zip(range(cfg.optim.accumulation), loader)]
                if len(micro) < cfg.optim.accumulation:
                    break  # end of epoch; a partial accumulation group is dropped
                metrics = self._step(micro)
                self.step += 1
                self.batch_pos += cfg.optim.accumulation
                self.recipe.on_step_end(self.step, metrics)
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    self._emit_metrics(metrics)
                if cfg.eval_every and (self.recipe.eval_dataset is not None or cfg.eval_tasks) \
                        and self.step % cfg.eval_every == 0:
                    self._evaluate()
                stop = dist.any_rank(self.stop_requested, self.device)
                if (cfg.save_every and self.step % cfg.save_every == 0) or stop:
                    self._save()
                    last_saved = self.step
                if stop:
                    self.events.emit("run_finished", self.step, status="stopped",
                                     message=f"stopped by signal at step {self.step}; resume with --resume {self.run_dir}")
                    return EXIT_OK
            else:
                break
            self.epoch, self.batch_pos = self.epoch + 1, 0
        if last_saved != self.step:
            self._save()
        self.events.emit("run_finished", self.step, status="completed", message=f"{self.step} steps")
        return EXIT_OK

    def _loader(self, epoch: int, skip: int):
        from torch.utils.data import DataLoader

        sampler = self.recipe.batch_sampler(self.recipe.train_dataset, epoch, skip)
        # num_workers=0: the data is already tokenized in a memory-mapped cache, and the order stays exact
        # an own generator: DataLoader draws its base seed from it, not from the global RNG, so rebuilding the
        # loader on resume leaves the dropout stream exactly where the checkpoint saved it
        return iter(DataLoader(self.recipe.train_dataset, batch_sampler=sampler, collate_fn=self.recipe.collate,
                               num_workers=0, pin_memory=self.device.type == "cuda",
                               generator=torch.Generator().manual_seed(self.cfg.seed + epoch)))

    def _autocast(self):
        return autocast(self.device, self.autocast_dtype)

    def _optimizer_step(self, micro: list) -> dict:
        cfg, o = self.cfg, self.cfg.optim
        factor = lr_factor(self.step, self.total_steps, o.schedule, o.warmup_steps, o.min_lr_ratio)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        self.train_model.train()
        weights = [self.recipe.loss_weight(b) for b in micro]
        # Each micro-batch's mean loss is weighted by its share of the step's targets over all ranks, so the
        # gradient is the mean over every target token of the global batch: a W-rank run equals a 1-rank run
        # (DDP then averages over ranks, hence the factor world_size).
        total_w = dist.all_reduce_sum([sum(weights)], self.device)[0]
        sums: dict[str, torch.Tensor] = {}  # metrics stay on the device: read once per step, below
        ddp = hasattr(self.train_model, "no_sync")
        for i, host_batch in enumerate(micro):
            batch = _to_device(host_batch, self.device)
            sync = contextlib.nullcontext() if (not ddp or i == len(micro) - 1) else self.train_model.no_sync()
            with sync:
                with self._autocast():
                    loss, metrics = self.recipe.loss_fn(self.train_model, batch)
                scale = weights[i] * self.world_size / total_w if total_w > 0 else 1.0
                self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
            self._tokens += self.recipe.useful_tokens(host_batch)  # counted on the host copy: no device sync
            share = weights[i] / total_w if total_w > 0 else 1.0 / (len(micro) * self.world_size)
            for k, v in {"loss": loss, **metrics}.items():
                v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                sums[k] = sums.get(k, 0.0) + v.to(self.device) * share
        keys = sorted(sums)
        self.scaler.unscale_(self.optimizer)
        if o.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, o.grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        # the step's one host sync: every metric, summed over ranks, and the gradient norm (identical on all ranks)
        packed = dist.all_reduce_tensor(torch.stack([sums[k].reshape(()) for k in keys]))
        values = torch.cat([packed, grad_norm.detach().float().reshape(1).to(self.device)]).tolist()
        reduced, grad_norm = dict(zip(keys, values[:-1])), values[-1]
        self._check_finite(reduced["loss"], grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        reduced.update(lr=self.optimizer.param_groups[0]["lr"], grad_norm=grad_norm)
        return reduced

    def _check_finite(self, loss: float, grad_norm: float) -> None:
        """Stop before the optimizer step when the loss, or (without a GradScaler, which would skip the step
        itself) the gradient norm, is Inf/NaN: nothing non-finite ever reaches the weights."""
        if not np.isfinite(loss):
            raise NonFiniteLoss(self.step + 1, f"loss is {loss} at step {self.step + 1}; training stopped, "
                                f"the last good checkpoint is kept. Lower optim.lr, check the data, or use bf16/fp32")
        if not self.scaler.is_enabled() and not np.isfinite(grad_norm):
            raise NonFiniteLoss(self.step + 1, f"gradient norm is {grad_norm} at step {self.step + 1} "
                                f"(loss {loss:.4g}); training stopped, the last good checkpoint is kept. "
                                "Lower optim.lr, check the data, or check the init weights for huge values")

    def _emit_metrics(self, metrics: dict) -> None:
        now = time.perf_counter()
        tokens = dist.all_reduce_sum([float(self._tokens)], self.device)[0]
        metrics = dict(metrics, tokens_per_s=tokens / max(now - self._t_log, 1e-9))
        self._tokens, self._t_log = 0, now
        if "_system" not in self.__dict__:  # made at the first log, so its first CPU interval is left out
            from core.train.system_metrics import SystemMetrics

            self._system = SystemMetrics(self.device)
        metrics.update(self._system.sample())
        epoch = self.epoch + min(1.0, self.batch_pos / max(self.num_batches, 1))
        self.events.emit("metric", self.step, epoch=round(epoch, 6), total_steps=self.total_steps, metrics=metrics)
        if self.rank == 0:
            log(f"step {self.step}/{self.total_steps} loss {metrics['loss']:.4f} lr {metrics['lr']:.3g} "
                f"grad_norm {metrics['grad_norm']:.3f} tok/s {metrics['tokens_per_s']:.0f}")

    def _evaluate(self) -> None:
        """Held-out loss and benchmarks. A stop signal ends a single-process evaluation at once (the step's
        checkpoint follows, without this eval); with several ranks the held-out loss has collectives inside, so
        only rank 0's benchmarks (which have none) are cut short."""
        alone = self.world_size == 1
        try:
            with self._stoppable_at_once() if alone else contextlib.nullcontext():
                result = self._eval_loss() if self.recipe.eval_dataset is not None else {}
            with self._stoppable_at_once():
                result.update(self._benchmark_metrics())
        except RunStopped:
            self.model.train()
            log(f"evaluation at step {self.step} stopped; the checkpoint of this step follows")
            return
        self.events.emit("eval", self.step, metrics=result)

    def _benchmark_metrics(self) -> dict:
        """eval/<task>/acc and eval/<task>/acc_norm of each `eval_tasks` benchmark (core/eval/bench.py), scored
        on rank 0 alone (no collectives inside; the other ranks go on to the next step's all-reduce)."""
        if not self.cfg.eval_tasks or self.rank != 0:
            return {}
        from core.eval.bench import TorchScorer, load_task, score_task

        if getattr(self, "_bench_tasks", None) is None:
            self._bench_tasks = [load_task(t) for t in self.cfg.eval_tasks]
        scorer = TorchScorer(self.model, self.recipe.tokenizer, self.device, batch_size=self.cfg.batch_size)
        metrics = {}
        for task in self._bench_tasks:
            summary = score_task(scorer, task, batch_size=self.cfg.batch_size)["summary"]
            metrics.update({f"eval/{task.name}/acc": summary["acc"], f"eval/{task.name}/acc_norm": summary["acc_norm"]})
        return metrics

    @torch.no_grad()
    def _eval_loss(self) -> dict:
        from torch.utils.data import DataLoader

        ds = self.recipe.eval_dataset
        sampler = self.recipe.batch_sampler(ds, 0, 0, shuffle=False)
        batches = (_to_device(b, self.device) for _, b in
                   zip(range(self.cfg.data.eval_batches), DataLoader(ds, batch_sampler=sampler, collate_fn=self.recipe.collate,
                                                                     generator=torch.Generator().manual_seed(self.cfg.seed))))
        self.model.eval()
        with self._autocast():
            pairs = self.recipe.evaluate(self.model, batches)
        self.model.train()
        keys = sorted(pairs)
        flat = dist.all_reduce_sum([x for k in keys for x in pairs[k]], self.device)
        return {k: flat[2 * i] / max(flat[2 * i + 1], 1e-12) for i, k in enumerate(keys)}

    def _save(self) -> None:
        rngs = dist.gather_objects(rng_state(self.device))
        # every rank's own recipe state: on-policy ranks each hold the cached rollouts of their own prompts
        extras = dist.gather_objects(self.recipe.extra_state())
        if self.rank == 0:
            extra = extras[0]
            for r, e in enumerate(extras):
                check_plain(e, f"{self.cfg.method} recipe's extra_state (rank {r})")

            def write(tmp: Path) -> None:
                self.recipe.save_weights(tmp)
                torch.save({"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                            "schedule": {"name": self.cfg.optim.schedule, "step": self.step,
                                         "total_steps": self.total_steps},
                            "rng": rngs, "recipe": extra, "recipe_ranks": extras,
                            "precision": self._precision_name()},
                           tmp / ckpt_mod.TRAINER_FILE)

            state = {"format": 1, "method": self.cfg.method, "epoch": self.epoch, "batch_in_epoch": self.batch_pos,
                     "total_steps": self.total_steps, "world_size": self.world_size, "time": time.time()}
            path = ckpt_mod.save_checkpoint(self.run_dir, self.step, write, state, keep_last=self.cfg.keep_last)
            self.events.emit("checkpoint", self.step, path=path.relative_to(self.run_dir).as_posix())
        dist.barrier()


def run_training(cfg: TrainConfig, resume: bool = False) -> int:
    """Train with `cfg` (resume: continue cfg.run_dir from its newest usable checkpoint); returns the exit code."""
    return Trainer(cfg, resume=resume).run()
