"""How a run ends when it does not complete: stop signals, and every failure turned into a `run_finished` status,
a message written for people and an exit code (docs/events.md).

A stop signal (SIGTERM, Ctrl-C) is honoured at the next step boundary (the engine saves a checkpoint there), or
at once in a phase without step boundaries (set-up, a single-process evaluation), where it raises `RunStopped`.
A second Ctrl-C stops at once. What a failure becomes (`classify`):

| cause                                        | status    | exit | message                                      |
|----------------------------------------------|-----------|------|----------------------------------------------|
| stop signal before the first step            | stopped   | 0    | where it stopped, and how to resume          |
| loss or gradient norm NaN/Inf                | failed    | 3    | the step, and what to change                 |
| bad config, data, checkpoint or file         | failed    | 1    | the error's own message (it says what to do) |
| out of memory                                | failed    | 1    | the device, and what to lower                |
| a rank or node lost (several processes)      | failed    | 1    | how to resume from the last checkpoint       |
| anything else (a bug)                        | failed    | 1    | type and text; the traceback goes to stderr  |
"""
from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core.preparation import PreparationStopped
from core.train.events import log

EXIT_OK, EXIT_FAILED, EXIT_NONFINITE = 0, 1, 3


class NonFiniteLoss(Exception):
    """The loss or gradient norm became NaN/Inf; args: (step, message)."""


class RunStopped(BaseException):
    """Raised by the signal handler in a phase with no step boundary to wait for (set-up, an evaluation).
    A BaseException, as KeyboardInterrupt is: a recipe's `except Exception` must not swallow a stop."""


class StopSignals:
    """SIGTERM/SIGINT for one run: `requested` is read at step boundaries; inside `at_once()` a signal raises
    RunStopped; while data preparation stops cooperatively (`cooperative()` true) it only sets the flag."""

    def __init__(self, cooperative: Callable[[], bool] = lambda: False):
        self.requested = False
        self.interruptible = False
        self._cooperative = cooperative
        self._old: dict = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (e.g. embedded use): no handlers
                pass

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}

    def _on_signal(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.requested = True
        name = signal.Signals(signum).name
        if self._cooperative():  # tokenizing: it stops after the batch in hand, keeping its shards
            log(f"received {name}: stopping data preparation (finished shards are kept)")
        elif self.interruptible:
            log(f"received {name}: stopping now")
            self.interruptible = False  # raised once; what follows (the stop event) must not be interrupted
            raise RunStopped(name)
        else:
            log(f"received {name}: saving a checkpoint at the next step boundary")

    @contextlib.contextmanager
    def at_once(self):
        """A phase without step boundaries: a stop signal raises RunStopped inside it."""
        if self.requested:
            raise RunStopped("stop requested")
        before, self.interruptible = self.interruptible, True
        try:
            yield
        finally:
            self.interruptible = before


@dataclass(frozen=True)
class Ending:
    """How a run that did not complete ends: its `run_finished` status and message, and the exit code."""
    status: str              # "stopped" or "failed"
    message: str
    exit_code: int
    step: int
    unexpected: bool = False  # not the config's or data's fault (a bug, out of memory): log the traceback, and a
    #                           rank other than 0 reports it itself (rank 0 is then blocked in a collective)


def classify(exc: BaseException, step: int, run_dir: Path | None, world_size: int, device=None) -> Ending:
    """The ending of a run that raised `exc` at `step` (see the table in the module docstring)."""
    resume = f"--resume {run_dir}" if run_dir is not None else "--resume RUN_DIR"
    if isinstance(exc, (RunStopped, PreparationStopped)):
        where = "while preparing data; the finished part of the token cache is kept" \
            if isinstance(exc, PreparationStopped) else "during set-up, before the first step"
        tail = f"; resume with {resume}" if run_dir is not None else ""
        return Ending("stopped", f"stopped by signal {where}{tail}", EXIT_OK, step)
    if isinstance(exc, NonFiniteLoss):
        return Ending("failed", exc.args[1], EXIT_NONFINITE, exc.args[0])
    if is_user_error(exc):  # bad config, data or checkpoint: the message says what to do
        return Ending("failed", str(exc), EXIT_FAILED, step)
    if isinstance(exc, torch.OutOfMemoryError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        where = f" on {device}" if device is not None else ""
        return Ending("failed", f"out of memory{where} at step {step + 1} ({first[:200]}); lower batch_size or "
                      "data.seq_len/max_len (raise optim.accumulation to keep the global batch), or turn on "
                      f"gradient_checkpointing; resume with {resume}", EXIT_FAILED, step, unexpected=True)
    if world_size > 1 and is_lost_peer(exc):
        first = str(exc).splitlines()[0] if str(exc) else ""
        return Ending("failed", f"a rank or node of this {world_size}-process run was lost ({type(exc).__name__}: "
                      f"{first}); resume it from its last checkpoint with {resume}", EXIT_FAILED, step)
    return Ending("failed", f"{type(exc).__name__}: {exc}", EXIT_FAILED, step, unexpected=True)


def is_user_error(exc: BaseException) -> bool:
    """Errors whose message is written for people (no traceback needed): config, data, checkpoint, files."""
    from core.data import DataError
    from core.model.io import CheckpointError as ModelCheckpointError
    from core.train.checkpoint import CheckpointError

    return isinstance(exc, (ValueError, OSError, DataError, CheckpointError, ModelCheckpointError))


def is_lost_peer(exc: BaseException) -> bool:
    """A collective that failed because another process went away (gloo/NCCL connection errors, timeouts)."""
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, torch.distributed.DistError) or any(
        s in text for s in ("connection reset", "connection closed", "broken pipe", "gloo", "nccl", "timed out"))
