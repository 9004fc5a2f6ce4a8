"""The GPU check's recipes section: short runs of each training path a first GPU run takes, through the engine
(core.train.run_training, in this process so dynamo's counters and CUDA's allocator can be read), each checked for
what a careful read found could go wrong on CUDA (issue 24):

- a finite loss at every step;
- a gradient on every trainable parameter at the first optimizer step (nonzero for the supervised methods; an
  on-policy step may have all-equal rewards in a group, hence zero advantages);
- graph breaks (with compile on) only where the model makes one on purpose (the MoE dispatch), and no new
  compiles after the second step (a dynamic length compiles twice: static, then dynamic);
- `torch.cuda.max_memory_allocated` within ±30 % of the pre-flight estimate (core.train.plan.estimate_memory,
  less its CUDA-context term, which the allocator does not see);
- host syncs per step, counted with `torch.cuda.set_sync_debug_mode("warn")` (reported; bounded for the
  supervised methods).

The data are the built-in demo datasets (resources/demo/) with a small tokenizer trained on them.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "resources" / "demo"
MEMORY_TOLERANCE = 0.30
SUPERVISED_SYNCS = 4  # per step: the engine's one metrics read, plus data movement the first GPU run will show

# name -> (method, data file, config overrides); RL sizes keep a step short
RL_SMALL = {"max_prompt_len": 96, "max_new_tokens": 24, "sample_every": 0}
RECIPES = {
    "sft": ("sft", "sft.jsonl", {}),
    "grpo": ("grpo", "rl.jsonl", {"method_options": dict(RL_SMALL, num_generations=4), "compile": "off"}),
    "grpo_compiled": ("grpo", "rl.jsonl", {"method_options": dict(RL_SMALL, num_generations=4), "compile": "on"}),
    "dpo": ("dpo", "dpo.jsonl", {}),
    "moe_pretrain": ("pretrain", "pretrain.jsonl", {"model": "moe_tiny"}),
    "fp16": ("sft", "sft.jsonl", {"precision": "fp16"}),
    "checkpointing": ("sft", "sft.jsonl", {"gradient_checkpointing": True}),
}


def demo_tokenizer(work: Path) -> Path:
    from core.tokenizer.train import train_tokenizer

    out = work / "demo-tokenizer"
    if not (out / "tokenizer.json").is_file():
        train_tokenizer([DEMO / "pretrain.jsonl", DEMO / "sft.jsonl"], vocab_size=1024, out_dir=out)
    return out


def model_config(name: str, vocab_size: int) -> dict:
    from core.config import get_preset

    if name == "moe_tiny":  # the tiny shape with MiniMind's MoE FFN
        return get_preset("tiny", vocab_size=vocab_size, use_moe=True).model_dump()
    return get_preset(name, vocab_size=vocab_size).model_dump()


class StepProbe:
    """An optimizer step pre-hook: checks the gradients at the first step and notes dynamo's compiled-frame count
    at every step."""

    def __init__(self) -> None:
        self.steps = 0
        self.frames: list[int] = []
        self.missing: list[str] = []
        self.zero: list[str] = []
        self.params = 0

    def __call__(self, optimizer, args, kwargs) -> None:
        from torch._dynamo.utils import counters

        self.steps += 1
        self.frames.append(counters["frames"]["ok"])
        if self.steps > 1:
            return
        for gi, group in enumerate(optimizer.param_groups):
            for pi, p in enumerate(group["params"]):
                if not p.requires_grad:
                    continue
                self.params += 1
                if p.grad is None:
                    self.missing.append(f"group {gi} param {pi} {tuple(p.shape)}")
                elif not bool(p.grad.abs().sum() > 0):
                    self.zero.append(f"group {gi} param {pi} {tuple(p.shape)}")

    @contextlib.contextmanager
    def installed(self):
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        handle = register_optimizer_step_pre_hook(self)
        try:
            yield self
        finally:
            handle.remove()


@contextlib.contextmanager
def compile_backend(backend: str):
    """torch.compile as the engine calls it, with `backend` (the dry run: dynamo's tracing without inductor)."""
    import torch

    real = torch.compile
    torch.compile = lambda model, **kw: real(model, **{"backend": backend, **kw})
    try:
        yield
    finally:
        torch.compile = real


@contextlib.contextmanager
def counted_syncs(device: str, found: list):
    """CUDA's sync debug mode as warnings, collected into `found` (nothing to count on CPU)."""
    import torch

    if not device.startswith("cuda"):
        yield
        return
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        found.extend(str(w.message) for w in caught if "synchroniz" in str(w.message).lower())
    finally:
        torch.cuda.set_sync_debug_mode("default")


def run_recipe(name: str, work: Path, device: str, size: dict, tok_dir: Path) -> dict:
    import torch
    import torch._dynamo
    from torch._dynamo.utils import counters

    from core.config.load import validate_train_config
    from core.methods import get_method
    from core.tokenizer import MiniMindTokenizer
    from core.train import run_training
    from core.train.plan import estimate_memory

    method, data, overrides = RECIPES[name]
    vocab = MiniMindTokenizer.load(tok_dir).vocab_size
    overrides = dict(overrides)
    model = model_config(overrides.pop("model", size["recipe_preset"]), vocab)
    steps, batch = size["recipe_steps"], size["recipe_batch"]
    config = {"method": method, "model": model, "run_dir": str(work / f"recipe-{name}"), "max_steps": steps,
              "batch_size": batch, "device": device, "precision": "auto", "log_every": 1, "save_every": 0,
              "compile": "on", "data": {"files": [str(DEMO / data)], "seq_len": size["recipe_seq"],
                                        "max_len": size["recipe_seq"], "tokenizer": str(tok_dir),
                                        "cache_dir": str(work / "recipe-cache")}, **overrides}
    cfg = validate_train_config(config, f"gpu_check recipe {name}")
    torch._dynamo.reset()
    counters.clear()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    probe, syncs = StepProbe(), []
    t0 = time.perf_counter()
    with probe.installed(), compile_backend(size["compile_backend"]), counted_syncs(device, syncs):
        code = run_training(cfg)
    seconds = time.perf_counter() - t0
    events = [json.loads(line) for line in (Path(cfg.run_dir) / "events.jsonl").read_text().splitlines()]
    losses = [e["metrics"]["loss"] for e in events if e["type"] == "metric"]
    started = next((e for e in events if e["type"] == "run_started"), {})
    breaks = {reason.splitlines()[0][:120]: n for reason, n in counters["graph_break"].items()}
    recompiles = probe.frames[-1] - probe.frames[1] if len(probe.frames) > 1 else 0
    spec = get_method(method)
    row = {"recipe": name, "method": method, "exit": code, "steps": len(losses), "seconds": seconds,
           "finite": bool(losses) and all(math.isfinite(x) for x in losses), "params_checked": probe.params,
           "grads_missing": len(probe.missing), "grads_zero": len(probe.zero), "graph_breaks": sum(breaks.values()),
           "break_reasons": list(breaks), "recompiles_after_step_2": recompiles,
           "syncs_per_step": len(syncs) / max(len(losses), 1) if device.startswith("cuda") else None,
           "precision": started.get("precision")}
    if device.startswith("cuda"):
        studio_config = dict(config, precision=started.get("precision", "bf16"), n_gpus=1)
        estimate = estimate_memory(studio_config, started.get("params", 0), on_cuda=True)
        expected = estimate["total"] - estimate["runtime"]
        row.update(peak_allocated=torch.cuda.max_memory_allocated(), estimated=expected,
                   memory_ratio=torch.cuda.max_memory_allocated() / expected)
    problems = []
    if code != 0 or len(losses) != steps:
        problems.append(f"exit {code} after {len(losses)} of {steps} steps")
    if not row["finite"]:
        problems.append("a non-finite loss")
    if probe.missing:
        problems.append(f"no gradient at step 1: {probe.missing[:3]}")
    if probe.zero and not spec.generates:
        problems.append(f"zero gradient at step 1: {probe.zero[:3]}")
    # the MoE dispatch runs outside the graph on purpose (core/model/model.py); nothing else may break it
    allowed_breaks = (all("MoEFeedForward.dispatch" in r for r in counters["graph_break"]) if model.get("use_moe")
                      else not breaks)
    if cfg.compile == "on" and not allowed_breaks:
        problems.append(f"graph breaks: {list(breaks)[:3]}")
    if recompiles:
        problems.append(f"{recompiles} compiles after step 2")
    if row.get("memory_ratio") is not None and abs(row["memory_ratio"] - 1) > MEMORY_TOLERANCE:
        problems.append(f"peak allocated {row['memory_ratio']:.2f}x the estimate")
    limit = SUPERVISED_SYNCS + (model["num_hidden_layers"] if model.get("use_moe") else 0)
    if row["syncs_per_step"] is not None and not spec.generates and row["syncs_per_step"] > limit:
        problems.append(f"{row['syncs_per_step']:.1f} host syncs a step (bound {limit})")
    row["ok"], row["problems"] = not problems, problems
    return row


def recipes(work: Path, device: str, size: dict) -> dict:
    tok_dir = demo_tokenizer(work)
    rows = []
    for name in RECIPES:
        try:
            rows.append(run_recipe(name, work, device, size, tok_dir))
        except Exception as exc:  # written down; the next recipe still runs
            rows.append({"recipe": name, "ok": False, "problems": [f"{type(exc).__name__}: {str(exc)[:300]}"]})
    return {"ok": all(r["ok"] for r in rows), "rows": rows}


def markdown(section: dict) -> list[str]:
    if "rows" not in section:
        return []
    lines = ["Recipes (engine runs, compile on unless named; memory against the pre-flight estimate):", "",
             "| recipe | steps | s | finite | grads missing / zero | graph breaks | compiles after step 2 "
             "| syncs/step | peak / estimate | result |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in section["rows"]:
        if "steps" not in r:
            lines.append(f"| {r['recipe']} | | | | | | | | | {'; '.join(r['problems'])} |")
            continue
        syncs = f"{r['syncs_per_step']:.1f}" if r["syncs_per_step"] is not None else "n/a"
        memory = f"{r['memory_ratio']:.2f}" if r.get("memory_ratio") is not None else "n/a"
        lines.append(f"| {r['recipe']} | {r['steps']} | {r['seconds']:.0f} | {'yes' if r['finite'] else 'NO'} | "
                     f"{r['grads_missing']} / {r['grads_zero']} of {r['params_checked']} | {r['graph_breaks']} | "
                     f"{r['recompiles_after_step_2']} | {syncs} | {memory} | "
                     f"{'passed' if r['ok'] else 'FAILED: ' + '; '.join(r['problems'])} |")
    return lines + [""]
