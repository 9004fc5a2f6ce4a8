"""The training engine: everything a method has in common, around a recipe's `loss_fn`. Read it top-down:
`run` → the train loop (`_train`) → one optimizer step (`_optimizer_step`), then evaluation, then set-up.

Owns: device and precision (bf16/fp16 autocast, GradScaler for fp16 only), gradient accumulation (DDP `no_sync`
on all but the last micro-step), token-weighted loss averaging across micro-batches and ranks, grad-norm
clipping, AdamW (fused on CUDA), the LR schedule, DDP under torchrun and the event stream (core/train/events.py,
docs/events.md). Beside it: saving and resuming a training checkpoint (core/train/checkpoint.py), stop signals
and what each failure becomes (core/train/failures.py), the run plan (core/train/plan.py), the recipe interface
(core/train/recipe.py).

Before the first step comes set-up: the run folder and config.json are written first (so `--resume` works on a
run stopped or killed at any later point), then the recipe builds its datasets and models. Tokenizing a corpus
into the token cache can take most of an hour: it reports `prepare` events and stderr lines, and stops at the next
batch on SIGTERM, keeping the finished shards (core/data/cache_build.py). Every other set-up phase (loading a
reference or teacher model, the cache's lock wait) and a single-process evaluation are interrupted at once by a
SIGTERM; in all of them the run ends with `run_finished` status `stopped`, exit 0. During training a SIGTERM or
Ctrl-C saves a checkpoint at the next step boundary and ends `stopped`, exit 0. A checkpoint whose step's
evaluation a stop cut short says so (`eval_pending`), and the resume runs that evaluation before anything else.

Exit codes: 0 completed or stopped, 1 failed (bad config, data or checkpoint, out of memory; the message says
why), 3 the loss became NaN/Inf (the last good checkpoint is kept).
"""
from __future__ import annotations

import contextlib
import os
import random
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from core.config.train import TrainConfig, save_train_config
from core.data.formats import using_mappings, with_data_mappings
from core.device import resolve_device
from core.precision import NAMES, autocast, configure_backends, precision_warning
from core.preparation import Preparation, PreparationStopped, PrepareProgress, describe_prepare, preparing
from core.process_identity import process_start_ticks
from core.train import checkpoint as ckpt_mod
from core.train import distributed as dist
from core.train.compile import is_compile_error
from core.train.events import EventLog, log
from core.train.failures import EXIT_OK, NonFiniteLoss, RunStopped, StopSignals, classify
from core.train.plan import plan_run
from core.train.recipe import RunContext, batches_per_epoch
from core.train.schedule import lr_factor
from core.train.trackers import open_trackers
from core.train.trainer_state import rng_kept, set_rng_state

PREPARE_LOG_EVERY_S = 10.0  # stderr lines while preparing data (events go out every second)


def run_training(cfg: TrainConfig, resume: bool = False) -> int:
    """Train with `cfg` (resume: continue cfg.run_dir from its newest usable checkpoint); returns the exit code."""
    return Trainer(cfg, resume=resume).run()


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False):
        self.cfg, self.resume = cfg, resume
        self.rank, self.local_rank, self.world_size = dist.world()
        self.step = 0
        self.run_dir: Path | None = None
        self._preparation = Preparation(report=self._report_preparation, should_stop=lambda: self.signals.requested)
        self.signals = StopSignals(cooperative=lambda: self._preparation.cooperative)
        self._prepare_logged = 0.0
        # stdout-only until the run folder exists: a failure before that (device, dist init, mkdir) still
        # reaches the studio as `error` + `run_finished failed`
        self.events = EventLog(None, enabled=self.rank == 0)
        self._pending_warnings: list[str] | None = []  # set-up warnings wait for run_started

    # ---- entry -----------------------------------------------------------------------------------------
    def run(self) -> int:
        self.signals.install()
        try:
            with self.signals.at_once():
                self._setup()
            return self._train()
        except (RunStopped, PreparationStopped, Exception) as exc:  # every stop and failure: events the studio shows
            self.signals.interruptible = False
            return self._finish_early(exc)
        finally:
            self.signals.restore()
            self.events.close()
            dist.shutdown()

    # ---- the loop --------------------------------------------------------------------------------------
    def _train(self) -> int:
        cfg = self.cfg
        self._emit_run_started()
        last_saved = self.step if self.resumed_from is not None else -1
        if dist.any_rank(self.signals.requested, self.device):  # stopped while loading data: nothing new to save
            return self._stopped(f"before step {self.step + 1}")
        if self._resumed_eval_stopped():
            return self._stopped(f"at step {self.step}")
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
                eval_pending = self._evaluates() and self.step % cfg.eval_every == 0 and not self._evaluate()
                stop = dist.any_rank(self.signals.requested, self.device)
                if (cfg.save_every and self.step % cfg.save_every == 0) or stop:
                    self._save(eval_pending)
                    last_saved = self.step
                if stop:
                    return self._stopped(f"at step {self.step}")
            else:
                break
            self.epoch, self.batch_pos = self.epoch + 1, 0
        if last_saved != self.step:
            self._save()
        self.events.emit("run_finished", self.step, status="completed", message=f"{self.step} steps")
        return EXIT_OK

    def _stopped(self, where: str) -> int:
        self.events.emit("run_finished", self.step, status="stopped",
                         message=f"stopped by signal {where}; resume with --resume {self.run_dir}")
        return EXIT_OK

    def _resumed_eval_stopped(self) -> bool:
        """The evaluation of the checkpoint's step, when the stop that saved it cut that evaluation short: run
        first on resume (the only work left if it was the last step), so every evaluation step is evaluated once.
        True when a stop (agreed across ranks) ends the run here; the checkpoint then still says it is pending."""
        if self.resumed is None or not self.resumed.eval_pending or not self._evaluates():
            return False
        if self._evaluate() and self.rank == 0:
            ckpt_mod.clear_eval_pending(self.resumed.checkpoint)  # done: a later resume from it must not redo it
        return dist.any_rank(self.signals.requested, self.device)

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

    def _optimizer_step(self, micro: list) -> dict:
        o = self.cfg.optim
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

    def _autocast(self):
        return autocast(self.device, self.autocast_dtype)

    def _loader(self, epoch: int, skip: int):
        from torch.utils.data import DataLoader

        sampler = self.recipe.batch_sampler(self.recipe.train_dataset, epoch, skip)
        # num_workers=0: the data is already tokenized in a memory-mapped cache, and the order stays exact
        # an own generator: DataLoader draws its base seed from it, not from the global RNG, so rebuilding the
        # loader on resume leaves the dropout stream exactly where the checkpoint saved it
        return iter(DataLoader(self.recipe.train_dataset, batch_sampler=sampler, collate_fn=self.recipe.collate,
                               num_workers=0, pin_memory=self.device.type == "cuda",
                               generator=torch.Generator().manual_seed(self.cfg.seed + epoch)))

    # ---- events, evaluation and checkpoints of the loop ------------------------------------------------
    def _emit_run_started(self) -> None:
        raw = self.model
        self.events.emit("run_started", self.step, run_id=self.run_dir.name, method=self.cfg.method,
                         config=self.cfg.model_dump(mode="json"), world_size=self.world_size, device=str(self.device),
                         precision=self._precision_name(), precision_reason=self.precision_reason,
                         params=sum(p.numel() for p in raw.parameters()),
                         trainable_params=sum(p.numel() for p in self.params),
                         dataset_tokens=getattr(self.recipe.train_dataset, "num_tokens", None),
                         total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                         resumed_from=self.resumed_from, pid=os.getpid(), pid_start_ticks=process_start_ticks(),
                         ranks=rank_processes())
        self._flush_warnings()

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

    def _evaluates(self) -> bool:
        return bool(self.cfg.eval_every) and (self.recipe.eval_dataset is not None or bool(self.cfg.eval_tasks))

    def _evaluate(self) -> bool:
        """Held-out loss and benchmarks; False when a stop cut it short (no `eval` event). A stop signal ends a
        single-process evaluation at once (the step's checkpoint follows, marked `eval_pending`, and the resume
        redoes it); with several ranks the held-out loss has collectives inside, so only rank 0's benchmarks
        (which have none) are cut short. The RNG streams are left as they were: the training after it and an
        evaluation redone on resume see the same ones."""
        alone = self.world_size == 1
        try:
            with rng_kept(self.device):
                with self.signals.at_once() if alone else contextlib.nullcontext():
                    result = self._eval_loss() if self.recipe.eval_dataset is not None else {}
                with self.signals.at_once():
                    result.update(self._benchmark_metrics())
        except RunStopped:
            self.model.train()
            log(f"evaluation at step {self.step} stopped; the checkpoint of this step follows and a resume redoes it")
            return False
        self.events.emit("eval", self.step, metrics=result)
        return True

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

    def _save(self, eval_pending: bool = False) -> None:
        path = ckpt_mod.save_training_checkpoint(
            self.run_dir, self.recipe, self.optimizer, self.scaler, method=self.cfg.method,
            schedule=self.cfg.optim.schedule, step=self.step, epoch=self.epoch, batch_in_epoch=self.batch_pos,
            total_steps=self.total_steps, precision=self._precision_name(), keep_last=self.cfg.keep_last,
            eval_pending=eval_pending)
        if path is not None:
            self.events.emit("checkpoint", self.step, path=path.relative_to(self.run_dir).as_posix())

    # ---- how a run that does not complete ends (core/train/failures.py) ---------------------------------
    def _finish_early(self, exc: BaseException) -> int:
        ending = classify(exc, self.step, self.run_dir, self.world_size, getattr(self, "device", None))
        if ending.unexpected:
            log(f"rank {self.rank}: {traceback.format_exc()}" if self.world_size > 1 else traceback.format_exc())
            self._report_from_this_rank(ending.step, ending.message)
        self._flush_warnings()
        if ending.status == "failed":
            self.events.error(ending.step, ending.message)
        self.events.emit("run_finished", ending.step, status=ending.status, message=ending.message)
        return ending.exit_code

    def _report_from_this_rank(self, step: int, message: str) -> None:
        """A rank other than 0 that fails unexpectedly (a bug, out of memory on its GPU) writes the failure into
        the run's events itself: rank 0 is then blocked in a collective waiting for it, until torchrun kills the
        group, and would never write `run_finished`. (Config and data errors hit rank 0 too; it reports those.)"""
        if self.rank == 0 or self.run_dir is None:
            return
        events = EventLog(self.run_dir, enabled=True, stdout=False)
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
        if (slow := precision_warning(cfg.precision, self.device)) and self.rank == 0:
            self._warn(slow)
        configure_backends(self.device)
        seed_everything(cfg.seed)  # same on every rank: identical initial weights
        self.recipe = self._build_recipe()
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
        self.plan = self.plan.counted(cfg, batches_per_epoch(self.recipe))
        self.num_batches, self.steps_per_epoch = self.plan.batches_per_epoch, self.plan.steps_per_epoch
        self.total_steps = self.plan.total_steps
        self.step, self.epoch, self.batch_pos, self.resumed_from = 0, 0, 0, None
        self.resumed = self._resume() if self.resume else None
        self.train_model = self._wrap(self.model)
        if self.resumed is None:
            seed_everything(cfg.seed + self.rank)  # per-rank streams for dropout and sampling
        else:
            set_rng_state(self.resumed.rng, self.device)

    def _build_recipe(self):
        """The method's recipe, its data and models built. On resume the model is rebuilt from the run's own
        checkpoint, never from `init` (which may have moved)."""
        from core.train import get_recipe

        resume_from = next((c for c in ckpt_mod.resume_candidates(self.run_dir)
                            if (c / "model_config.json").is_file()), None) if self.resume else None
        ctx = RunContext(run_dir=self.run_dir, device=self.device, rank=self.rank, world_size=self.world_size,
                         autocast_dtype=self.autocast_dtype, log=log, warn=self._warn, emit=self.events.emit,
                         resume_from=resume_from)
        recipe = get_recipe(self.cfg.method)(self.cfg, ctx)
        # Every rank sets up at once, with no collective around it: one process tokenizes each cache entry while
        # the others wait on the entry's lock file (core/data/cache.py), however long that takes; a barrier
        # here would hit the NCCL watchdog's timeout on a large corpus.
        with preparing(self._preparation), using_mappings(self.cfg.data.mappings):
            recipe.setup()
        return recipe

    def _resume(self):
        """Weights, optimizer, scaler, recipe state and data position from the newest usable checkpoint."""
        resumed = ckpt_mod.resume_training(self.run_dir, self.recipe, self.optimizer, self.scaler,
                                           precision=self._precision_name(), warn=self._warn)
        if resumed is None:
            self.resumed_from = 0  # no checkpoint yet: tells the studio to drop the steps kept from the last attempt
            return None
        self.step, self.epoch, self.batch_pos = resumed.step, resumed.epoch, resumed.batch_in_epoch
        self.resumed_from = self.step
        return resumed

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

    def _precision_name(self) -> str:
        return NAMES[self.autocast_dtype]

    # ---- warnings and data-preparation progress --------------------------------------------------------
    def _warn(self, message: str) -> None:
        if self._pending_warnings is None:
            self.events.warning(self.step, message)
        else:
            log(f"warning: {message}")
            self._pending_warnings.append(message)

    def _flush_warnings(self) -> None:
        for message in self._pending_warnings or []:
            self.events.emit("warning", self.step, message=message)
        self._pending_warnings = None

    def _report_preparation(self, progress: PrepareProgress) -> None:
        fields = progress.fields()
        self.events.emit("prepare", self.step, **fields)
        now = time.monotonic()
        if self.rank == 0 and (progress.state != "running" or now - self._prepare_logged >= PREPARE_LOG_EVERY_S):
            self._prepare_logged = now
            log(describe_prepare(fields, detail=True))


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


def default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"
