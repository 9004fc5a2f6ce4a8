"""Wall time of a run before it starts: a few real optimizer steps of the model, batch, sequence length, device and
precision it will use, timed on this machine and cached per machine, multiplied by the run's steps.

The measured step is the engine's inner loop on random token ids: forward with labels, backward, AdamW step
(fused on CUDA), under the run's autocast. It leaves out data loading, evaluation, checkpoints and start-up, so a
real run takes somewhat longer (docs/studio.md states the error measured). Methods that generate inside the step
(on-policy RL) or run several models per step are not timed here: ``step_models`` says how many forward/backward
passes of the policy a method's step costs, and None where a short calibration cannot tell.

The studio measures in a child process (``measure_in_child``: the trainer's own entry with ``--calibrate``), never
in its own: a model, its AdamW state, the allocator's cached blocks and a CUDA context left in the studio would be
missing from the GPU when the memory check and then the run come. The child also reports the device it sees
(``device_facts``: GPU count, free memory before its model), so pre-flight never initialises CUDA in the studio.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path

CALIBRATION_STEPS = 3  # timed steps, after one warm-up step (allocator, kernels, autotuning)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibration_key(model: dict, batch: int, seq: int, device: str, precision: str) -> str:
    """What a step's time depends on: the model config, per-device batch, sequence length, device, precision,
    torch's version and the CPU model (the cache may travel with a workspace to another machine)."""
    import torch

    body = {"model": model, "batch": batch, "seq": seq, "device": device, "precision": precision,
            "torch": torch.__version__, "cpu": cpu_model(), "threads": torch.get_num_threads()}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def step_models(method: str) -> float | None:
    """Policy forward/backward passes per optimizer step relative to pretrain/SFT (DPO: chosen and rejected, plus
    the frozen reference's forward ≈ 1/3 of a pass each); None for methods whose step a short calibration cannot
    time (rollout generation, a critic, a teacher)."""
    from core.methods import get_method

    spec = get_method(method)
    if spec.generates or spec.critic:
        return None
    factor = 2.0 if spec.data_kind == "dpo" else 1.0
    if spec.reference:
        factor *= 4 / 3
    if spec.teacher:
        factor *= 4 / 3
    return factor


def measure_step_seconds(model: dict, batch: int, seq: int, device: str = "cpu", precision: str = "fp32",
                         steps: int = CALIBRATION_STEPS, cancelled=lambda: False) -> float | None:
    """Median seconds of one optimizer step on random ids (None when cancelled)."""
    import torch

    from core.config.model import ModelConfig
    from core.model import MiniMindForCausalLM
    from core.device import resolve_device
    from core.precision import autocast, resolve_precision

    dev = resolve_device(device)
    dtype, _ = resolve_precision(precision, dev)
    net = MiniMindForCausalLM(ModelConfig.model_validate(model)).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=dev.type == "cuda")
    ids = torch.randint(0, net.config.vocab_size, (batch, seq), device=dev)
    times = []
    for i in range(steps + 1):
        if cancelled():
            return None
        start = time.perf_counter()
        with autocast(dev, dtype):
            loss = net(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def device_facts(device: str) -> dict:
    """The device `device` resolves to, read by a process that has allocated nothing on it yet: its type, the
    CUDA GPUs visible (0 without CUDA), and on CUDA its name, total and free bytes (free after this process's own
    CUDA context, which a trainer starting next needs as well)."""
    import torch

    from core.device import resolve_device

    dev = resolve_device(device)
    facts = {"type": dev.type, "count": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    if dev.type == "cuda":
        free, total = torch.cuda.mem_get_info(dev)
        facts.update(name=torch.cuda.get_device_name(dev), free=free, total=total)
    return facts


def calibrate_main(spec_json: str) -> int:
    """The child: `{"device", "threads", "measure": {"model", "batch", "seq", "precision"} or null}` in, one JSON
    line out: {"device": device_facts, "step_seconds": seconds or null}. It measures with the parent's torch
    thread count, which the cache key records."""
    import torch

    spec = json.loads(spec_json)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    out = {"device": device_facts(spec["device"]), "step_seconds": None}
    m = spec.get("measure")
    if m:
        out["step_seconds"] = measure_step_seconds(m["model"], m["batch"], m["seq"], spec["device"], m["precision"])
    print(json.dumps(out), flush=True)
    return 0


def measure_in_child(command: list[str], device: str, measure: dict | None = None, cancelled=lambda: False,
                     env: dict | None = None, timeout: float = 900) -> dict | None:
    """Run `command + ["--calibrate", spec]` (the trainer's argv, studio/worker/command.py) and return its answer
    (`calibrate_main`); None when cancelled, which kills the child. Everything it allocated goes with it."""
    import torch

    spec = json.dumps({"device": device, "threads": torch.get_num_threads(), "measure": measure})
    proc = subprocess.Popen([*command, "--calibrate", spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if cancelled() or time.monotonic() > deadline:
                proc.kill()
                proc.communicate()
                if cancelled():
                    return None
                raise TimeoutError(f"calibration took over {timeout:.0f} s") from None
    if proc.returncode != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the calibration process failed (exit {proc.returncode}): {last}")
    return json.loads(out.strip().splitlines()[-1])


class CalibrationCache:
    """{key: {"step_seconds", "time", ...}} in one JSON file; a damaged file counts as empty."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str) -> float | None:
        entry = self._read().get(key)
        return float(entry["step_seconds"]) if isinstance(entry, dict) and "step_seconds" in entry else None

    def put(self, key: str, step_seconds: float, **about) -> None:
        data = self._read()
        data[key] = {"step_seconds": step_seconds, "time": time.time(), **about}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(self.path)


def step_seconds(cache: CalibrationCache, model: dict, batch: int, seq: int, device: str, precision: str,
                 cancelled=lambda: False, measure=measure_step_seconds) -> tuple[float | None, bool]:
    """(seconds per micro-batch step, whether it came from the cache); measured by `measure` (in this process by
    default) and cached on a miss."""
    key = calibration_key(model, batch, seq, device, precision)
    cached = cache.get(key)
    if cached is not None:
        return cached, True
    seconds = measure(model, batch, seq, device, precision, cancelled=cancelled)
    if seconds is not None:
        cache.put(key, seconds, batch=batch, seq=seq, device=device, precision=precision)
    return seconds, False
