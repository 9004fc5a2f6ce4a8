"""Running a sweep: Optuna asks for a trial, the trial runs as an ordinary training run (`python -m core.train`,
its own run folder, config.json and events.jsonl, with `sweep` naming the sweep in its config), its objective is
read from the run's events and reported to Optuna at every evaluation, and Optuna is told how it ended.

- Pruning: at each reported value `trial.should_prune()` is asked; a trial to prune is sent SIGTERM, the run's
  normal stop (a checkpoint at the step boundary, `run_finished` stopped), and recorded PRUNED.
- Several at once: up to `parallel` trainers, each given one of the devices in turn (CUDA_VISIBLE_DEVICES).
- Resume: the study lives in the sweep folder's study.db, so running the same command again continues. A trial the
  earlier process left RUNNING continues in its own run folder (`--resume`, from its last checkpoint), or is
  recorded from its events if its run finished meanwhile. Trainers get SIGTERM when the sweep process dies
  (Linux: PR_SET_PDEATHSIG), so a killed sweep leaves stopped runs, not orphans training on.
- A kill at any moment leaves a state the next run resumes from: sweep.json and config.json are written whole
  (renamed into place); a trial killed inside `ask` has the values it lacks drawn on resume; the trainer's pid is
  recorded as it starts, so a resume waits for it even before its run_started; a resumed trial's objective counts
  its earlier attempts' evaluations (a run stopped at its last step, its evaluation done, evaluates nothing when
  resumed).
- Stop: SIGTERM or Ctrl-C stops every running trial (each saves a checkpoint) and leaves them to the next resume.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from core.atomic_file import replace_file
from core.config.load import validate_train_config
from core.config.train import save_train_config
from core.event_schema import parse_event_line
from core.process_identity import pid_alive, process_start_ticks, trainer_command
from core.sweep.spec import SweepSpec, SweepSpecError, grid_values, load_sweep_spec, trial_config
from core.sweep.study import (LOCK_FILE, REASON_ATTR, RUN_DIR_ATTR, SWEEP_FILE, read_sweep_file, storage,
                              sweep_id_for, trial_run_name)

POLL_S = 0.2
LOCK_TRIES = 10  # x 50 ms: how long taking the folder's lock waits out a reader's brief shared lock
REQUEUED_ATTR = "requeued"  # a FAIL that does not count: the same values run again as a new trial
TRAINER_ATTR = "trainer"    # [pid, start ticks] of the trial's latest trainer, recorded as it starts
ORPHAN_WAIT_S = 300.0  # a trainer of the interrupted sweep gets this long to save its checkpoint and stop
REPO_ROOT = Path(__file__).resolve().parents[2]


class SweepError(RuntimeError):
    """A sweep that cannot go on; the message says why and what to do."""


@dataclass
class _Slot:
    """One trial being trained."""

    number: int
    trial_id: int
    run_dir: Path
    proc: subprocess.Popen
    device: str | None
    offset: int = 0
    value: float | None = None      # the objective's latest value
    reported: int = -1              # the last step reported to Optuna (a resumed run replays steps)
    pruning: bool = False
    finished: dict | None = None    # the run_finished event
    resumed: bool = False


@dataclass
class SweepResult:
    sweep_id: str
    finished: list[int] = field(default_factory=list)   # trials this process saw to the end
    stopped: bool = False


def _die_with_parent(parent: int) -> None:
    """In the trainer's child, before exec: SIGTERM when the sweep process dies (the trainer's own stop). A sweep
    that died before the prctl took effect sends none: the child ends instead of training unwatched."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    """Complete event lines of `path` after byte `offset`, and the new offset."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = [e for e in (parse_event_line(line) for line in data[:end].splitlines()) if e is not None]
    return events, offset + end


class SweepRunner:
    def __init__(self, spec: SweepSpec, base: dict, sweep_dir: Path, runs_dir: Path | None = None,
                 log: TextIO = sys.stderr, trainer: list[str] | None = None) -> None:
        self.spec, self.base = spec, base
        self.sweep_dir = Path(sweep_dir).resolve()
        self.runs_dir = Path(runs_dir).resolve() if runs_dir else self.sweep_dir / "runs"
        self.out = log
        self.trainer = trainer or trainer_command()
        self.slots: list[_Slot] = []
        self.stop_requested = False
        self.devices = list(spec.devices) or _visible_gpus(spec.parallel)
        self.sweep_id = ""

    def say(self, text: str) -> None:
        print(f"sweep: {text}", file=self.out, flush=True)

    # ------------------------------------------------------------------------------------------ set-up
    def _open(self, spec_file: Path | None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        info = read_sweep_file(self.sweep_dir)
        if info is not None and info.get("spec_identity") != self.spec.identity():
            raise SweepError(f"{self.sweep_dir} holds sweep {info.get('id')} made from another spec (the "
                             f"{_changed(info.get('spec_identity') or {}, self.spec.identity())} changed); use the "
                             "same spec to resume it, or a new --out folder for a new sweep")
        if info is None:
            info = {"id": sweep_id_for(self.spec.name or (spec_file.stem if spec_file else "sweep")),
                    "created": time.time()}
            if spec_file is not None:
                shutil.copyfile(spec_file, self.sweep_dir / f"spec{spec_file.suffix or '.yaml'}")
        info.update(spec=self.spec.model_dump(mode="json"), spec_identity=self.spec.identity(), base=self.base,
                    n_trials=self.spec.total_trials(), runs_dir=str(self.runs_dir))
        replace_file(self.sweep_dir / SWEEP_FILE, json.dumps(info, indent=2) + "\n")
        self.sweep_id = info["id"]
        store = storage(self.sweep_dir)
        try:
            existing = optuna.load_study(study_name=self.sweep_id, storage=store)
            n_before = len(existing.get_trials(deepcopy=False))
        except KeyError:
            n_before = 0
        # a seeded sampler restarted from its seed would propose the earlier trials again: offset it
        return optuna.create_study(study_name=self.sweep_id, storage=store, load_if_exists=True,
                                   direction=self.spec.objective.direction, sampler=self._sampler(n_before),
                                   pruner=self._pruner())

    def _sampler(self, n_before: int):
        import optuna

        seed = self.spec.seed + n_before
        if self.spec.sampler == "grid":
            space = {name: grid_values(name, p) for name, p in self.spec.parameters.items()}
            return optuna.samplers.GridSampler(space, seed=seed)
        if self.spec.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed)

    def _pruner(self):
        import optuna

        p = self.spec.pruner
        if p.kind == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
        if p.kind == "hyperband":
            return optuna.pruners.HyperbandPruner()
        if p.kind == "threshold":
            return optuna.pruners.ThresholdPruner(upper=p.upper, lower=p.lower, n_warmup_steps=p.warmup_steps)
        return optuna.pruners.NopPruner()

    def _distributions(self) -> dict:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out = {}
        for name, p in self.spec.parameters.items():
            if p.type == "float":
                out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
            elif p.type == "int":
                out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
            else:
                out[name] = CategoricalDistribution(p.choices)
        return out

    # ------------------------------------------------------------------------------------------- main
    def run(self, spec_file: Path | None = None) -> SweepResult:
        with _locked(self.sweep_dir):
            study = self._open(spec_file)
            result = SweepResult(self.sweep_id)
            old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                self._recover(study, result)
                self._loop(study, result)
            finally:
                for sig, handler in old.items():
                    signal.signal(sig, handler)
            result.stopped = self.stop_requested
            return result

    def _on_signal(self, signum, frame) -> None:
        if not self.stop_requested:
            self.say(f"received {signal.Signals(signum).name}: stopping the running trials (each saves a "
                     "checkpoint); run the same command again to resume")
        self.stop_requested = True

    def _loop(self, study, result: SweepResult) -> None:
        from optuna.trial import TrialState

        distributions, signalled = self._distributions(), False
        while True:
            for slot in list(self.slots):
                self._follow(study, slot)
                if slot.proc.poll() is not None:
                    self._follow(study, slot)  # the lines written between the last read and the exit
                    self.slots.remove(slot)
                    if self._settle(study, slot):
                        result.finished.append(slot.number)
            if self.stop_requested and not signalled:
                signalled = True
                for slot in self.slots:
                    with contextlib.suppress(ProcessLookupError):
                        slot.proc.send_signal(signal.SIGTERM)
            done = sum(not t.user_attrs.get(REQUEUED_ATTR) for t in study.get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
            left = self.spec.total_trials() - done - len(self.slots)
            while not self.stop_requested and left > 0 and len(self.slots) < self.spec.parallel:
                trial = study.ask(distributions)
                self._launch(trial.number, trial._trial_id, dict(trial.params), study, resume=False)
                left -= 1
            if not self.slots and (left <= 0 or self.stop_requested):
                return
            time.sleep(POLL_S)

    # ------------------------------------------------------------------------------------------ trials
    def _launch(self, number: int, trial_id: int, params: dict, study, resume: bool) -> None:
        run_dir = self.runs_dir / trial_run_name(self.sweep_id, number)
        study._storage.set_trial_user_attr(trial_id, RUN_DIR_ATTR, str(run_dir))
        config_file = run_dir / "config.json"
        # what the earlier attempts wrote, read before this trainer appends to it
        earlier, offset = _read_events(run_dir / "events.jsonl", 0) if resume else ([], 0)
        if resume and config_file.is_file():
            argv = self.trainer + ["--resume", str(run_dir)]
        else:
            data = trial_config(self.base, params)
            data["run_dir"] = str(run_dir)
            data["sweep"] = {"id": self.sweep_id, "dir": str(self.sweep_dir), "trial": number, "params": params}
            try:
                cfg = validate_train_config(data, f"trial {number}")
            except ValueError as exc:
                self._tell_failed(study, number, trial_id, str(exc))
                return
            run_dir.mkdir(parents=True, exist_ok=True)
            save_train_config(cfg, config_file)
            argv = self.trainer + ["--config", str(config_file)]
        device = self._free_device()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(REPO_ROOT)] + [
            p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]))
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        linux = sys.platform.startswith("linux")
        with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
            proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                    preexec_fn=functools.partial(_die_with_parent, os.getpid()) if linux else None)
        study._storage.set_trial_user_attr(trial_id, TRAINER_ATTR, [proc.pid, process_start_ticks(proc.pid)])
        slot = _Slot(number, trial_id, run_dir, proc, device, offset=offset, resumed=resume)
        trial = study._storage.get_trial(trial_id)
        slot.reported = max(trial.intermediate_values, default=-1)
        self.slots.append(slot)
        # a run stopped at its last step after that step's evaluation evaluates nothing when resumed (one stopped
        # during it redoes it first): its objective is the earlier attempts' last value, and the values the
        # killed sweep had not yet reported count too
        self._take(study, slot, earlier, earlier=True)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
        self.say(f"trial {number} {'resumed' if resume else 'started'} ({shown}) in {run_dir}"
                 + (f" on GPU {device}" if device is not None else ""))

    def _free_device(self) -> str | None:
        if not self.devices:
            return None
        used = [s.device for s in self.slots]
        return min(self.devices, key=lambda d: used.count(d))

    def _follow(self, study, slot: _Slot) -> None:
        """Read the run's new events: report the objective to Optuna, prune when it says so."""
        events, slot.offset = _read_events(slot.run_dir / "events.jsonl", slot.offset)
        self._take(study, slot, events)

    def _take(self, study, slot: _Slot, events: list[dict], earlier: bool = False) -> None:
        """Events of the slot's run (`earlier`: of the attempts before its trainer, whose run_finished is not
        its end): the objective's values reported to Optuna, pruning asked at each."""
        from optuna.trial import Trial

        metric = self.spec.objective.metric
        kind = "eval" if metric.startswith("eval/") else "metric"
        for ev in events:
            if ev["type"] == "run_finished" and not earlier:
                slot.finished = ev
            if ev["type"] != kind or not isinstance(ev.get("metrics"), dict):
                continue
            value = ev["metrics"].get(metric)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            slot.value = float(value)
            step = int(ev.get("step") or 0)
            if step <= slot.reported or slot.pruning:
                continue
            slot.reported = step
            trial = Trial(study, slot.trial_id)
            trial.report(slot.value, step)
            if trial.should_prune():
                slot.pruning = True
                self.say(f"trial {slot.number} pruned at step {step} ({metric} {_fmt(slot.value)}): stopping it")
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signal.SIGTERM)

    def _settle(self, study, slot: _Slot) -> bool:
        """Tell Optuna how a trial whose trainer exited ended; False when it stays RUNNING for a resume."""
        from optuna.trial import TrialState

        status = (slot.finished or {}).get("status")
        if slot.pruning:
            study._storage.set_trial_user_attr(slot.trial_id, REASON_ATTR, f"pruned at step {slot.reported}")
            study.tell(slot.number, state=TrialState.PRUNED)
            return True
        if status == "completed" and slot.value is not None:
            study.tell(slot.number, slot.value)
            self.say(f"trial {slot.number} finished: {self.spec.objective.metric} {_fmt(slot.value)}"
                     f"{_best_text(study)}")
            return True
        if self.stop_requested and status in ("stopped", None):
            self.say(f"trial {slot.number} stopped; it continues from its checkpoint when the sweep resumes")
            return False
        if status == "completed":
            reason = (f"the run reported no {self.spec.objective.metric} (set data.eval_files and eval_every for "
                      "eval/ metrics)")
        else:
            message = (slot.finished or {}).get("message") or _stderr_tail(slot.run_dir)
            reason = f"run {status or 'ended without run_finished'} (exit {slot.proc.returncode}): {message}"
        self._tell_failed(study, slot.number, slot.trial_id, reason)
        return True

    def _tell_failed(self, study, number: int, trial_id: int, reason: str) -> None:
        from optuna.trial import TrialState

        study._storage.set_trial_user_attr(trial_id, REASON_ATTR, reason[:2000])
        study.tell(number, state=TrialState.FAIL)
        self.say(f"trial {number} failed: {reason}")

    # ------------------------------------------------------------------------------------------ resume
    def _recover(self, study, result: SweepResult) -> None:
        """Trials an earlier sweep process left RUNNING: wait for their trainer if it still runs, then record
        the ones that finished and continue the others in their own run folders."""
        from optuna.trial import TrialState

        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        distributions = self._distributions()
        for t in running:
            run_dir = Path(t.user_attrs.get(RUN_DIR_ATTR) or self.runs_dir / trial_run_name(self.sweep_id, t.number))
            self._wait_for_orphan(t.number, run_dir, t.user_attrs.get(TRAINER_ATTR))
            events, offset = _read_events(run_dir / "events.jsonl", 0)
            finished = next((e for e in reversed(events) if e["type"] in ("run_finished", "run_started")), None)
            if finished is not None and finished["type"] == "run_finished" and finished.get("status") == "completed":
                slot = _Slot(t.number, t._trial_id, run_dir, _Exited(), None, finished=finished,
                             reported=max(t.intermediate_values, default=-1))
                self._follow(study, slot)  # reads everything: the objective's last value
                if self._settle(study, slot):
                    result.finished.append(t.number)
                continue
            params = dict(t.params)
            if set(distributions) - set(params):  # killed inside `ask`: the values it had not drawn yet
                params = _draw_missing(study, t._trial_id, distributions)
            if len(self.slots) >= self.spec.parallel:  # fewer slots than before: they wait their turn
                self._tell_requeued(study, t.number, t._trial_id, params)
                continue
            self._launch(t.number, t._trial_id, params, study, resume=True)

    def _tell_requeued(self, study, number: int, trial_id: int, params: dict) -> None:
        """A RUNNING trial this process has no slot for (parallel lowered): failed, its values asked again."""
        from optuna.trial import TrialState

        study._storage.set_trial_user_attr(trial_id, REASON_ATTR, "interrupted; its values are tried again")
        study._storage.set_trial_user_attr(trial_id, REQUEUED_ATTR, True)
        study.tell(number, state=TrialState.FAIL)
        study.enqueue_trial(params)

    def _wait_for_orphan(self, number: int, run_dir: Path, launched=None) -> None:
        """Stop the interrupted sweep's trainer of this trial, if it still runs, and wait for it to end: the one
        recorded at launch (it may not have reported run_started yet) and the one its events name."""
        events, _ = _read_events(run_dir / "events.jsonl", 0)
        started = next((e for e in reversed(events) if e["type"] == "run_started"), None)
        known = [tuple(launched)] if isinstance(launched, list) and len(launched) == 2 else []
        if started is not None:
            known.append((started.get("pid"), started.get("pid_start_ticks")))
        for pid, ticks in dict.fromkeys(known):
            if not pid_alive(pid, ticks):
                continue
            self.say(f"trial {number}: its trainer (pid {pid}) from the interrupted sweep still runs; stopping it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + ORPHAN_WAIT_S
            while pid_alive(pid, ticks):
                if time.monotonic() > deadline:
                    raise SweepError(f"trial {number}: the trainer pid {pid} ({run_dir}) did not stop within "
                                     f"{ORPHAN_WAIT_S:.0f} s of SIGTERM; end it, then run the sweep again")
                time.sleep(POLL_S)


def _draw_missing(study, trial_id: int, distributions: dict) -> dict:
    """The trial's values, those it lacks drawn by the sampler as `study.ask` draws them (`Trial._suggest` skips
    the ones already drawn)."""
    import optuna

    trial = optuna.Trial(study, trial_id)
    for name, distribution in distributions.items():
        trial._suggest(name, distribution)
    return dict(trial.params)


class _Exited:
    """The process handle of a trial whose trainer ended under an earlier sweep process."""

    returncode = 0

    def poll(self) -> int:
        return 0


@contextlib.contextmanager
def _locked(sweep_dir: Path):
    """One sweep process per folder: a second one would take over the first one's running trials. A lock held
    for a moment by a reader (the studio checking whether the sweep runs) is waited for, up to half a second."""
    import fcntl

    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / LOCK_FILE, "a+") as fh:
        for attempt in range(LOCK_TRIES):
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == LOCK_TRIES - 1:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    raise SweepError(f"{sweep_dir} is being run by {holder}; stop it first (SIGTERM), or wait") \
                        from None
                time.sleep(0.05)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fh.truncate(0)


def _visible_gpus(parallel: int) -> list[str]:
    """One slot per visible GPU when trials run several at once; none (the config's own device) otherwise."""
    if parallel <= 1:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # no torch build with CUDA: trials share the CPU
        return []


def _changed(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(keys) or "spec"


def _best_text(study) -> str:
    try:
        best = study.best_trial
    except ValueError:
        return ""
    return f" (best so far: trial {best.number}, {_fmt(best.value)})"


def _stderr_tail(run_dir: Path, lines: int = 3) -> str:
    try:
        text = (run_dir / "stderr.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no output"
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_sweep(spec_path: Path, sweep_dir: Path, runs_dir: Path | None = None, parallel: int | None = None,
              n_trials: int | None = None, log: TextIO = sys.stderr,
              trainer: list[str] | None = None) -> SweepResult:
    """Load and validate the spec, then run (or resume) the sweep in `sweep_dir`."""
    overrides = {k: v for k, v in (("parallel", parallel), ("n_trials", n_trials)) if v is not None}
    spec, base = load_sweep_spec(spec_path, overrides)
    runner = SweepRunner(spec, base, sweep_dir, runs_dir, log=log, trainer=trainer)
    return runner.run(Path(spec_path))


__all__ = ["SweepRunner", "SweepError", "SweepSpecError", "SweepResult", "run_sweep"]
