"""The one-command GPU check: everything a first GPU run must show, in under 8 minutes on one GPU.

    python -m bench.gpu_check                          # on the GPU; writes its section into docs/benchmarks.md
    python -m bench.gpu_check --device cpu --dry-run --out /tmp/check.md   # the CPU dry run the tests use

Sections (each runs even when an earlier one failed; a failure is written down, and the exit code is 1):
1. throughput: bf16 training tokens/s and MFU of `small` and `base` (dry run: `tiny`), eager and torch.compile'd,
   with fused AdamW and SDPA forced to the flash kernel (on CUDA; said so when the kernel refuses). MFU is against
   the bf16 matmul peak measured here (bench/mfu.py) and against the card's data sheet (bench/common.py).
2. recipes: short engine runs of SFT (varying lengths), GRPO (compile off and on), DPO, MoE pretrain, fp16 and
   gradient checkpointing, each checked for finite losses, gradients at step 1, graph breaks and recompiles,
   peak memory against the pre-flight estimate and host syncs a step (bench/gpu_recipes.py).
3. launch_resume: a run started the way the studio starts it (studio/worker/command.py's argv and environment,
   headless), killed with SIGKILL after its first checkpoint, resumed with --resume, completed.
4. gguf_export: that run's checkpoint exported to GGUF q8_0 with llama.cpp's parity check passing.
5. two_ranks: SFT, MoE pretrain, PPO and agent RL with two ranks on one device over gloo (MINIMIND_DIST_BACKEND;
   both ranks on GPU 0), each under a timeout: DDP, the collectives and per-rank metrics run for real.
6. over_count: a torchrun launch of one rank more than there are GPUs must fail at once, naming the cause.
7. preflight_launch: the studio's pre-flight (calibration in a child) leaves this process's free GPU memory as it
   was, and the run launched next completes.
8. decode: greedy decode tokens/s of the trained checkpoint with bf16 weights (core.infer.backend.TorchBackend).

The data is built in (core/export/bench.py's text and tokenizer, the demo datasets): the check needs no
downloads. Weights are random or briefly trained: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import gpu_recipes
from bench.gpu_recipes import recipes

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("throughput", "recipes", "launch_resume", "gguf_export", "two_ranks", "over_count", "preflight_launch",
            "decode")
FULL = {"presets": ("small", "base"), "batch_size": 16, "seq_len": 1024, "steps": 10, "compile_backend": "inductor",
        "run_preset": "small", "run_steps": 200, "save_every": 50, "run_batch": 8, "run_seq": 256,
        "recipe_preset": "tiny", "recipe_steps": 16, "recipe_batch": 8, "recipe_seq": 256, "rank_steps": 6,
        "timeout": 240, "agent": {"thinking_ratio": 0.5}}  # episodes with and without thinking on each rank
# the dry run: one torch thread in this process and its children (a shared 2-core machine slows two spinning
# threads tenfold); torch.compile with the "eager" backend (dynamo's tracing without inductor's minutes of C++)
DRY = {"presets": ("tiny",), "batch_size": 2, "seq_len": 64, "steps": 2, "compile_backend": "eager",
       "run_preset": "tiny", "run_steps": 8, "save_every": 2, "run_batch": 4, "run_seq": 64, "threads": 1,
       "recipe_preset": "tiny", "recipe_steps": 3, "recipe_batch": 2, "recipe_seq": 64, "rank_steps": 2,
       "timeout": 180, "agent": {"thinking_ratio": 0.0}}


# ---- 1. throughput ----------------------------------------------------------------------------------------
def _attention_kernel(device: str):
    """SDPA restricted to the flash kernel on CUDA (an error if it cannot run), any kernel elsewhere."""
    if not device.startswith("cuda"):
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def train_speed(preset: str, compiled: bool, device: str, size: dict, flash: bool = True) -> dict:
    """tokens/s of bf16 training steps (forward, backward, fused AdamW on CUDA), after the compile and warm-up."""
    import torch

    from bench.mfu import train_flops_per_token

    from core.config import get_preset
    from core.model import MiniMindForCausalLM

    cfg = get_preset(preset, vocab_size=6400)
    torch.manual_seed(0)
    model = MiniMindForCausalLM(cfg).to(device)
    step_model = torch.compile(model, backend=size["compile_backend"]) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
    b, t = size["batch_size"], size["seq_len"]
    x = torch.randint(0, cfg.vocab_size, (b, t), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            loss = step_model(x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    with _attention_kernel(device) if flash else contextlib.nullcontext():
        t0 = time.perf_counter()
        step()
        sync()
        first = time.perf_counter() - t0
        step()
        sync()
        t0 = time.perf_counter()
        for _ in range(size["steps"]):
            step()
        sync()
    seconds = (time.perf_counter() - t0) / size["steps"]
    return {"preset": preset, "compiled": compiled, "step_s": seconds, "first_step_s": first,
            "tok_s": b * t / seconds, "flops_per_token": train_flops_per_token(cfg, t),
            "fused_adamw": device.startswith("cuda"), "flash": flash and device.startswith("cuda")}


def throughput(device: str, size: dict) -> dict:
    from bench.common import gpu_peak_flops
    from bench.mfu import matmul_peak, mfu

    rows = []
    for preset in size["presets"]:
        for compiled in (False, True):
            try:
                row = train_speed(preset, compiled, device, size)
            except RuntimeError as exc:  # the flash kernel refused (shape, dtype, GPU): measured without forcing it
                row = dict(train_speed(preset, compiled, device, size, flash=False),
                           flash_refused=str(exc).splitlines()[0][:200])
            rows.append(row)
    from core.config import get_preset

    cfg = get_preset(size["presets"][-1])
    peak = matmul_peak(device, "bf16", min(size["batch_size"] * size["seq_len"], 8192), cfg.hidden_size,
                       cfg.resolved_intermediate_size)
    sheet = gpu_peak_flops(_device_name(device), "bf16") if device.startswith("cuda") else None
    for r in rows:
        r["mfu"] = mfu(r["flops_per_token"], r["tok_s"], peak)
        r["mfu_datasheet"] = mfu(r["flops_per_token"], r["tok_s"], sheet)
    return {"rows": rows, "peak_flops": peak, "datasheet_flops": sheet, "batch": f"{size['batch_size']} x {size['seq_len']}"}


# ---- 3.-7. runs launched as the studio launches them ---------------------------------------------------
def _workspace(work: Path) -> tuple[Path, Path]:
    """(tokenizer dir, pretrain JSONL) from the built-in text."""
    from core.export.bench import TEXT, _bench_tokenizer

    _bench_tokenizer(work)
    data = work / "pretrain.jsonl"
    lines = [json.dumps({"text": line}, ensure_ascii=False) for line in TEXT.splitlines() if line.strip()]
    data.write_text("\n".join(lines * 10) + "\n", encoding="utf-8")
    return work / "tokenizer", data


def _config(work: Path, name: str, device: str, size: dict, tok_dir: Path, data: Path, steps: int) -> Path:
    config = {"method": "pretrain", "model": size["run_preset"], "run_dir": str(work / name), "max_steps": steps,
              "batch_size": size["run_batch"], "device": device, "precision": "auto", "log_every": 1,
              "save_every": size["save_every"], "keep_last": 2,
              "data": {"files": [str(data)], "seq_len": size["run_seq"], "tokenizer": str(tok_dir),
                       "cache_dir": str(work / "cache")}}
    path = work / f"{name}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def _environment(size: dict) -> dict:
    """The studio's environment for the trainer (studio/worker/command.py), with the dry run's thread count."""
    from studio.worker.command import trainer_environment

    env = trainer_environment()
    if size.get("threads"):
        env["OMP_NUM_THREADS"] = str(size["threads"])
    return env


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written
            out.append(json.loads(line))
    return out


def _finished(run_dir: Path) -> dict:
    done = [e for e in _events(run_dir) if e["type"] == "run_finished"]
    return done[-1] if done else {}


def launch_resume(work: Path, device: str, size: dict, tok_dir: Path, data: Path, timeout: float = 240) -> dict:
    """Start headless with the studio's argv, SIGKILL after the first checkpoint, resume, and finish."""
    from studio.worker.command import build_trainer_command

    cfg = _config(work, "studio-run", device, size, tok_dir, data, size["run_steps"])
    run_dir = work / "studio-run"
    env = _environment(size)
    with open(work / "studio-run.log", "wb") as log:
        proc = subprocess.Popen(build_trainer_command(cfg), cwd=REPO, env=env, stdout=log, stderr=log,
                                start_new_session=True)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if any(e["type"] == "checkpoint" for e in _events(run_dir)):
                os.killpg(proc.pid, signal.SIGKILL)  # a crash: no chance to save anything more
                break
            time.sleep(0.05)
        proc.wait(timeout=30)
    killed_at = max((e["step"] for e in _events(run_dir) if e["type"] == "metric"), default=0)
    was_killed = proc.returncode == -signal.SIGKILL
    t0 = time.perf_counter()
    resumed = subprocess.run(build_trainer_command(cfg, resume=run_dir), cwd=REPO, env=env, capture_output=True,
                             timeout=timeout)
    started = [e for e in _events(run_dir) if e["type"] == "run_started"]
    end = _finished(run_dir)
    ok = was_killed and resumed.returncode == 0 and end.get("status") == "completed" \
        and end.get("step") == size["run_steps"]
    return {"ok": ok, "killed": was_killed, "killed_after_step": killed_at,
            "resumed_from": started[-1].get("resumed_from") if started else None, "final_step": end.get("step"),
            "resume_s": time.perf_counter() - t0, "device": started[-1].get("device") if started else None,
            "precision": started[-1].get("precision") if started else None,
            "stderr_tail": resumed.stderr.decode(errors="replace")[-400:] if resumed.returncode else ""}


def gguf_export(work: Path) -> dict:
    from core.export.gguf import export_gguf

    report = export_gguf(work / "studio-run", work / "check-q8_0.gguf", "q8_0", check=True, modelfile=False)
    parity = report.get("parity") or {}
    return {"ok": bool(parity), "qtype": "q8_0", **{k: v for k, v in parity.items() if isinstance(v, (int, float))}}


def _rank_config(work: Path, name: str, method: str, data: Path, device: str, size: dict, tok_dir: Path,
                 **extra) -> Path:
    from bench.gpu_recipes import RL_SMALL, model_config
    from core.tokenizer import MiniMindTokenizer

    vocab = MiniMindTokenizer.load(tok_dir).vocab_size
    config = {"method": method, "model": model_config(size["recipe_preset"], vocab), "run_dir": str(work / name),
              "max_steps": size["rank_steps"], "batch_size": 4, "device": device, "precision": "auto",
              "log_every": 1, "save_every": 0, "compile": "off",
              "data": {"files": [str(data)], "seq_len": size["run_seq"], "max_len": size["run_seq"],
                       "tokenizer": str(tok_dir), "cache_dir": str(work / "rank-cache")}}
    if method in ("ppo", "agent"):
        config["method_options"] = dict(RL_SMALL, **({"num_generations": 2, "max_turns": 2, "max_prompt_len": 1024}
                                                     if method == "agent" else {}))
    for key, value in extra.items():
        config[key] = dict(config[key], **value) if isinstance(value, dict) else value
    path = work / f"{name}.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def _two_ranks(cmd: list[str], env: dict, timeout: float) -> tuple[list[int | None], str]:
    """Rank 0 and rank 1 as two processes that both use device 0 (LOCAL_RANK 0 each, as two one-GPU machines
    would), meeting over gloo (torchrun would give rank 1 GPU 1). Returns exit codes (None: killed at the
    timeout) and the stderr tail of the rank that failed first."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = []
    for rank in (0, 1):
        rank_env = dict(env, RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2", LOCAL_WORLD_SIZE="1",
                        GROUP_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                        MINIMIND_DIST_BACKEND="gloo")
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=rank_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      start_new_session=True))
    deadline, codes, tails = time.monotonic() + timeout, [], []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            codes.append(proc.returncode)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            codes.append(None)
        tails.append(err.decode(errors="replace")[-400:])
    # the rank that failed first says why; the other one only reports that its peer went away
    return codes, next((t for c, t in zip(codes, tails) if c != 0 and "was lost" not in t), tails[0])


def two_ranks(work: Path, device: str, size: dict) -> dict:
    """SFT, MoE pretrain, PPO and agent RL (whose episodes differ between ranks) with two ranks over gloo."""
    from bench.gpu_recipes import DEMO, demo_tokenizer
    from studio.worker.command import trainer_base_command

    tok_dir = demo_tokenizer(work)
    runs = {"sft": ("sft", DEMO / "sft.jsonl", {}),
            "moe_pretrain": ("pretrain", DEMO / "pretrain.jsonl", {"model": {"use_moe": True}}),
            "ppo": ("ppo", DEMO / "rl.jsonl", {}),
            "agent": ("agent", DEMO / "agent_rl.jsonl", {"method_options": size["agent"]})}
    out, env = {}, _environment(size)
    for name, (method, data, extra) in runs.items():
        cfg = _rank_config(work, f"ranks-{name}", method, data, device, size, tok_dir, **extra)
        t0 = time.perf_counter()
        codes, tail = _two_ranks(trainer_base_command(1) + ["--config", str(cfg)], env, size["timeout"])
        end = _finished(work / f"ranks-{name}")
        started = [e for e in _events(work / f"ranks-{name}") if e["type"] == "run_started"]
        ok = codes == [0, 0] and end.get("status") == "completed" and started and started[0]["world_size"] == 2
        out[name] = "passed" if ok else (f"FAILED (exit {codes}, {'timed out' if None in codes else tail[-200:]})")
        out[f"{name}_s"] = time.perf_counter() - t0
    return {"ok": all(v == "passed" for k, v in out.items() if not k.endswith("_s")), **out}


def over_count(work: Path, device: str, size: dict, tok_dir: Path, data: Path) -> dict:
    """torchrun with one rank more than the GPUs here: every rank must refuse at once, and the event stream must
    say why (on CPU the dry run asks for CUDA, which is not there: the same path, another cause)."""
    import torch

    visible = torch.cuda.device_count() if device.startswith("cuda") else 0
    cfg = _config(work, "over-count", "cuda", dict(size, save_every=0), tok_dir, data, 2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={visible + 1}", "-m",
           "core.train", "--config", str(cfg)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_environment(size), capture_output=True, timeout=size["timeout"])
    errors = [json.loads(line)["message"] for line in proc.stdout.decode(errors="replace").splitlines()
              if line.startswith("{") and '"type": "error"' in line]
    cause = "GPUs were asked for" if device.startswith("cuda") else "CUDA"
    return {"ok": proc.returncode != 0 and any(cause in m for m in errors), "ranks": visible + 1,
            "message": errors[0] if errors else "", "seconds": time.perf_counter() - t0}


def preflight_launch(work: Path, device: str, size: dict, tok_dir: Path, data: Path) -> dict:
    """Pre-flight as the studio runs it (its calibration in a child), then the run: this process's free and
    reserved GPU memory must not change across the pre-flight, and the run must complete."""
    import torch

    from core.tokenizer import MiniMindTokenizer
    from studio.panes.config.preflight import run_preflight
    from core.train.plan import estimate_memory
    from studio.worker.command import build_trainer_command

    cuda = device.startswith("cuda")
    cfg_path = _config(work, "preflight-run", device, dict(size, save_every=0), tok_dir, data, 4)
    config = json.loads(cfg_path.read_text())
    config["model"] = _model_dict(size["run_preset"], MiniMindTokenizer.load(tok_dir).vocab_size)
    config["precision"] = "fp32" if not cuda else "auto"
    free_before = torch.cuda.mem_get_info()[0] if cuda else None
    reserved_before = torch.cuda.memory_reserved() if cuda else None
    result = run_preflight(config, estimate_memory(config, 0, on_cuda=cuda), lambda *a: None, lambda: False,
                           workspace=type("W", (), {"root": work, "tokenizers_dir": work / "none"})())
    free_after = torch.cuda.mem_get_info()[0] if cuda else None
    run = subprocess.run(build_trainer_command(cfg_path), cwd=REPO, env=_environment(size), capture_output=True,
                         timeout=size["timeout"])
    end = _finished(work / "preflight-run")
    time_ok = bool((result.get("time") or {}).get("step_seconds"))
    kept = not cuda or (free_after >= free_before - 64 * 2**20 and torch.cuda.memory_reserved() == reserved_before)
    return {"ok": time_ok and kept and run.returncode == 0 and end.get("status") == "completed",
            "calibrated_step_s": (result.get("time") or {}).get("step_seconds"),
            "free_before_gb": free_before / 1e9 if cuda else None, "free_after_gb": free_after / 1e9 if cuda else None,
            "stderr_tail": run.stderr.decode(errors="replace")[-400:] if run.returncode else ""}


def _model_dict(preset: str, vocab: int) -> dict:
    from core.config import get_preset

    return get_preset(preset, vocab_size=vocab).model_dump()


# ---- 8. decode --------------------------------------------------------------------------------------------
def decode(work: Path, device: str) -> dict:
    import torch

    from bench.infer_speed import _measure
    from core.infer.backend import TorchBackend

    backend = TorchBackend(work / "studio-run", device=device, dtype=torch.bfloat16)
    try:
        prompt = backend.tokenize("MiniMind is a small language model. " * 4)
        speed = _measure(backend, prompt, repeats=2)
    finally:
        backend.close()
    return {"ok": speed["decode_tok_s"] > 0, "dtype": "bf16", "prompt_tokens": len(prompt), **speed}


# ---- report -----------------------------------------------------------------------------------------------
def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device).index or 0)
    from bench.common import machine_info

    return machine_info()["cpu"] or "CPU"


def markdown(results: dict, device: str, dry_run: bool, seconds: float) -> str:
    name = _device_name(device)
    title = f"## GPU check: {name}" if not dry_run else f"## GPU check (dry run on {device}): {name}"
    lines = [title, "", f"`python -m bench.gpu_check{' --device ' + device if device != 'cuda' else ''}"
             f"{' --dry-run' if dry_run else ''}`, {time.strftime('%Y-%m-%d')}, {seconds:.0f} s in all.", ""]
    t = results.get("throughput", {})
    if "rows" in t:
        lines += [f"bf16 training, batch {t['batch']} tokens; MFU against the bf16 matmul peak measured "
                  f"here ({t['peak_flops'] / 1e12:.1f} TFLOP/s)"
                  + (f" and the data sheet ({t['datasheet_flops'] / 1e12:.0f} TFLOP/s)" if t["datasheet_flops"] else "")
                  + ":", "",
                  "| preset | compile | tokens/s | step (s) | first step (s) | MFU (measured peak) | MFU (data sheet) "
                  "| fused AdamW | flash SDPA |", "|---|---|---|---|---|---|---|---|---|"]
        for r in t["rows"]:
            sheet = f"{r['mfu_datasheet']:.1%}" if r["mfu_datasheet"] is not None else "n/a"
            flash = "yes" if r["flash"] else ("refused: " + r["flash_refused"] if r.get("flash_refused") else "no")
            lines.append(f"| {r['preset']} | {'on' if r['compiled'] else 'off'} | {r['tok_s']:,.0f} | "
                         f"{r['step_s']:.4f} | {r['first_step_s']:.1f} | {r['mfu']:.1%} | {sheet} | "
                         f"{'yes' if r['fused_adamw'] else 'no'} | {flash} |")
        lines.append("")
    lines += gpu_recipes.markdown(results.get("recipes", {}))
    if "error" in results.get("recipes", {}):
        lines += [f"- **recipes**: error: {results['recipes']['error']}", ""]
    for name in SECTIONS[2:]:
        r = results.get(name, {})
        status = "error: " + r["error"] if "error" in r else ("passed" if r.get("ok") else "FAILED")
        facts = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()
                          if k not in ("ok", "error", "stderr_tail", "seconds_in_section", "rows")
                          and v not in ("", None))
        lines.append(f"- **{name}**: {status}" + (f" ({facts})" if facts else ""))
    lines.append("")
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the section with the same heading in `path` (up to the next `## `), or append it."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    heading = section.splitlines()[0]
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + (section.rstrip("\n") + "\n\n" + text[end + 1:] if end >= 0 else section)
    path.write_text(text, encoding="utf-8")


def run(device: str = "cuda", dry_run: bool = False, out: Path | None = None) -> dict:
    size = DRY if dry_run else FULL
    results: dict = {}
    t_all = time.perf_counter()
    from core.export.parity import one_torch_thread

    threads = one_torch_thread() if size.get("threads") == 1 else contextlib.nullcontext()
    with threads, tempfile.TemporaryDirectory(prefix="minimind-gpu-check-") as tmp:
        work = Path(tmp)
        tok_dir, data = _workspace(work)
        jobs = {"throughput": lambda: throughput(device, size),
                "recipes": lambda: recipes(work, device, size),
                "launch_resume": lambda: launch_resume(work, device, size, tok_dir, data),
                "gguf_export": lambda: gguf_export(work),
                "two_ranks": lambda: two_ranks(work, device, size),
                "over_count": lambda: over_count(work, device, size, tok_dir, data),
                "preflight_launch": lambda: preflight_launch(work, device, size, tok_dir, data),
                "decode": lambda: decode(work, device)}
        for name in SECTIONS:
            t0 = time.perf_counter()
            try:
                results[name] = jobs[name]()
            except Exception as exc:  # written down; the next sections still run
                results[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
            results[name]["seconds_in_section"] = time.perf_counter() - t0
            print(f"{name}: {results[name]}", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t_all
    results["markdown"] = markdown(results, device, dry_run, seconds)
    if out is not None:
        write_section(Path(out), results["markdown"])
    results["ok"] = all("error" not in results[n] and results[n].get("ok", True) for n in SECTIONS)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes (the test suite's CPU run)")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                   help="the Markdown file whose 'GPU check' section is written")
    a = p.parse_args(argv)
    result = run(a.device, a.dry_run, a.out)
    print(result["markdown"])
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
