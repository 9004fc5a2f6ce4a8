"""Agent-RL gain on the built-in tool task: the demo's SFT model before and after `minimind train agent` with the
GRPO loss and with the CISPO loss, 3 seeds, evaluated with `minimind eval tools` (core/eval/tool_use.py), paired.

    python -m bench.agent_gain                      # prints the tables (test split, then validation)
    python -m bench.agent_gain --markdown           # the same as Markdown (docs/benchmarks.md)
    python -m bench.agent_gain --rl-steps 10 --seeds 0   # a cheaper look (not the published setting)

Everything is built-in and offline:
1. `minimind demo` (core/demo.py, the FULL plan) trains a tokenizer, pretrains and SFTs the tiny demo model on the
   demo conversations plus the tool-call conversations (sft_tools.jsonl); its SFT checkpoint is the start of
   every RL run.
2. Tasks: the demo's agent_rl.jsonl generated with `AGENT_TASKS` lines. Its held-out lines (every 5th,
   `core.data.demo.agent_rl_held_out`: their calls never occur in any training data) are split in two: the
   first half is the **validation** split, the second the **test** split. RL trains on the other lines.
3. `agent` runs from the SFT checkpoint, once per loss (`grpo`, `cispo`) and seed (`seeds`).
4. Each model answers every case of a split greedily with the built-in tools (up to 3 turns); a case is correct
   when the final answer contains every ground-truth value.

Reported on the test split: each model's mean over seeds (and per seed), and the paired difference to SFT: per
case, (RL correct averaged over seeds) − (SFT correct), its mean and a 95 % paired-bootstrap interval over
cases (the same statistics as bench/rl_gain.py).

Which settings were chosen, and on what: turns and tokens from MiniMind v3's agent defaults scaled to the tiny
model. The learning rate, KL weight, temperature and advantage scaling are the method's defaults (core/methods.py,
core/config/rl.py AgentConfig): upstream's ratio to the SFT rate. Group size, prompts per step and steps were
chosen on the validation split (2026-12-06, seed 0, CISPO): 2 prompts × G 4 for 40 steps −1.0 to +1.0 points;
4 × 8 for 150 steps +2.0; the same at temperature 1.0 −3.0; LR 1e-4 −4.0. `--split validation` runs only the validation split, for tuning; the test split is reported
once, with settings fixed before. CPU, one thread per run.

    python -m bench.agent_gain --work-dir W --split validation --seeds 0      # tune on validation
    python -m bench.agent_gain --work-dir W --sft-run W/demo/runs/sft         # reuse the demo's SFT run
    python -m bench.agent_gain --work-dir W --model small --explore 30        # the demo on MiniMind2-small

Seeds can run as separate processes (or machines) from one SFT run, each with `--seeds N --json sN.json`;
`--combine s0.json s1.json s2.json` then reports them as one run: it checks that every file holds the same
settings but the seeds and the same SFT answers per case, and recomputes the means and the paired intervals.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

from bench.common import run_tag
from bench.rl_gain import paired

AGENT_TASKS = 1000  # agent_rl.jsonl lines: 200 held out (100 validation, 100 test)
AGENT = {"prompts": 4, "G": 8, "max_turns": 2, "max_new_tokens": 48}  # lr, kl_coef, scaling: the defaults
LOSSES = ("grpo", "cispo")


def _split(agent_rl: Path, work: Path) -> dict[str, Path]:
    from core.data.demo import agent_rl_held_out

    lines = agent_rl.read_text(encoding="utf-8").splitlines()
    held = [line for i, line in enumerate(lines) if agent_rl_held_out(i)]
    parts = {"train": [line for i, line in enumerate(lines) if not agent_rl_held_out(i)],
             "validation": held[:len(held) // 2], "test": held[len(held) // 2:]}
    out = {}
    for name, part in parts.items():
        out[name] = work / f"agent_{name}.jsonl"
        out[name].write_text("\n".join(part) + "\n", encoding="utf-8")
    return out


def _demo_sft(work: Path, threads: int, model: str = "tiny", device: str = "cpu") -> tuple[Path, Path]:
    """(SFT run dir, demo data dir) of a full `minimind demo` run with `AGENT_TASKS` agent tasks; `model`: the
    preset it trains (another than tiny: at upstream's pretraining rate, in the precision `auto` picks — bf16 on
    a GPU or a CPU with native bf16, else fp32; asking for bf16 on an AVX2-only CPU made a step 100× slower)."""
    import dataclasses

    import core.demo as demo
    from core.data.demo import SIZES
    from core.demo import FULL, run_demo

    plan = dataclasses.replace(FULL, data_sizes=tuple({**SIZES, "agent_rl": AGENT_TASKS}.items()), model=model,
                               precision="fp32" if model == "tiny" else "auto", device=device)
    saved, demo.FULL = demo.FULL, plan
    try:
        run_demo(work / "demo", fast=False, say=lambda m: None, threads=threads)
    finally:
        demo.FULL = saved
    return work / "demo" / "runs" / "sft", work / "demo" / "data"


def _agent(run_dir: Path, sft: Path, tasks: Path, loss: str, steps: int, seed: int,
           overrides: list[str] = (), device: str = "cpu") -> float:
    from core.config.load import load_train_config
    from core.train import run_training

    cfg = {"method": "agent", "init": str(sft), "run_dir": str(run_dir), "max_steps": steps, "seed": seed,
           "batch_size": AGENT["prompts"], "device": device, "precision": "auto", "log_every": 5, "save_every": 0,
           "data": {"files": [str(tasks)]},
           "method_options": {"loss": loss, "num_generations": AGENT["G"], "max_turns": AGENT["max_turns"],
                              "max_new_tokens": AGENT["max_new_tokens"], "sample_every": 0}}
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = run_training(load_train_config(None, list(overrides), base=cfg))
    if code != 0:
        raise RuntimeError(f"agent run {run_dir} failed (exit {code}); see {run_dir}/events.jsonl")
    return time.perf_counter() - start


def score_cases(checkpoint: Path, cases_file: Path, device: str = "cpu") -> list[float]:
    """1/0 per case: the greedy tool-using answer contains every ground-truth value."""
    from core.eval.tool_use import BackendTarget, evaluate_tool_use, load_cases
    from core.infer.backend import TorchBackend

    backend = TorchBackend(checkpoint, device=device)
    try:
        result = evaluate_tool_use(BackendTarget(backend, 96), load_cases(cases_file), max_turns=3,
                                   without_tools=False)
    finally:
        backend.close()
    return [float(c["correct"]) for c in result["cases"]]


def explore(checkpoint: Path, cases_file: Path, per_tool: int = 30, samples: int = 8, temperature: float = 1.0,
            max_turns: int = 2, max_new_tokens: int = 48, device: str = "cpu") -> dict:
    """What RL has to work with, per tool (the record's `tool`): greedy accuracy, and over `samples` episodes per
    case sampled as the RL runs sample (core.eval.tool_use.sampled_coverage: `temperature`, no top-k/top-p,
    `max_turns`, `max_new_tokens`) the success rate, pass@k and the share of cases whose group would carry any
    correctness signal. Group advantages can only reinforce what sampling finds."""
    from core.eval.tool_use import BackendTarget, evaluate_tool_use, load_cases, sampled_coverage
    from core.infer.backend import TorchBackend

    chosen, seen = [], {}
    for case in load_cases(cases_file):
        seen[case.tool] = seen.get(case.tool, 0) + 1
        if seen[case.tool] <= per_tool:
            chosen.append(case)
    backend = TorchBackend(checkpoint, device=device)
    try:
        target = BackendTarget(backend, max_new_tokens)
        greedy = [c["correct"] for c in evaluate_tool_use(target, chosen, max_turns, without_tools=False)["cases"]]
        cov = sampled_coverage(target, chosen, samples, temperature, max_turns)
    finally:
        backend.close()
    out = {}
    for tool, rates in cov["by_tool"].items():
        hits = [g for g, case in zip(greedy, chosen) if (case.tool or "-") == tool]
        out[tool] = {**rates, "greedy": sum(hits) / len(hits)}
    return {"samples": samples, "temperature": temperature, "tools": out}


def explore_table(result: dict) -> str:
    k = result["samples"]
    head = ("tool", "cases", "greedy", f"sampled (T={result['temperature']})", f"pass@{k}", "groups with signal")
    rows = [(tool, str(r["cases"]), f"{r['greedy']:.0%}", f"{r['sampled']:.1%}", f"{r['pass_at_k']:.0%}",
             f"{r['signal']:.0%}") for tool, r in result["tools"].items()]
    return "\n".join("| " + " | ".join(row) + " |" for row in [head, ("---",) * len(head), *rows])


def run(rl_steps: int = 150, seeds: tuple[int, ...] = (0, 1, 2), threads: int = 1, work: Path | None = None,
        sft_run: Path | None = None, overrides: list[str] = (), split_names: tuple[str, ...] = ("validation", "test"),
        losses: tuple[str, ...] = LOSSES, model: str = "tiny", device: str = "cpu") -> dict:
    """`work`: keep everything there (default: a temporary folder); `sft_run`: reuse that SFT run (its demo data
    beside it, as `minimind demo` lays it out) instead of training one; `overrides`: `--set` strings for the RL
    runs (tuning on the validation split)."""
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if sft_run is not None:
            sft, data = Path(sft_run), Path(sft_run).parent.parent / "data"
        else:
            sft, data = _demo_sft(work, threads, model, device)
        splits = _split(data / "agent_rl.jsonl", work)
        times = {"demo": time.perf_counter() - t0}
        scores = {split: {"sft": [score_cases(sft, splits[split], device)]} for split in split_names}
        tag = run_tag(overrides)
        for loss in losses:
            for seed in seeds:
                run_dir = work / "-".join(filter(None, (loss, str(seed), tag)))
                times[run_dir.name] = _agent(run_dir, sft, splits["train"], loss, rl_steps, seed, overrides,
                                              device)
                for split in split_names:
                    scores[split].setdefault(loss, []).append(score_cases(run_dir, splits[split], device))
    result = {"settings": {**AGENT, "rl_steps": rl_steps, "seeds": list(seeds), "agent_tasks": AGENT_TASKS,
                           "overrides": list(overrides), "losses": list(losses), "model": model,
                           "device": device},
              "seconds": {k: round(v, 1) for k, v in times.items()}}
    for split, by_model in scores.items():
        base = by_model["sft"][0]
        result[split] = {"n": len(base), "sft": sum(base) / len(base)}
        for loss in losses:
            runs = by_model[loss]
            result[split][loss] = {"mean": sum(map(sum, runs)) / sum(map(len, runs)),
                                   "per_seed": [sum(r) / len(r) for r in runs], "vs_sft": paired(runs, base),
                                   "cases": runs}
        result[split]["sft_cases"] = base
    return result


def combine(named: dict[str, dict]) -> dict:
    """One result from runs of the same settings with different seeds (`--seeds N --json F` per process), keyed by
    where each came from. Raises ValueError naming the source when its settings other than the seeds, or the SFT's
    per-case answers, differ from the first's, or when a seed repeats."""
    if not named:
        raise ValueError("nothing to combine")
    (first_name, first), results = next(iter(named.items())), list(named.values())
    same = {k: v for k, v in first["settings"].items() if k != "seeds"}
    seeds: list[int] = []
    for name, r in named.items():
        other = {k: v for k, v in r["settings"].items() if k != "seeds"}
        if other != same:
            diff = sorted(k for k in same.keys() | other.keys() if same.get(k) != other.get(k))
            raise ValueError(f"{name}: settings differ from {first_name}'s in {', '.join(diff)}")
        clash = set(seeds) & set(r["settings"]["seeds"])
        if clash:
            raise ValueError(f"{name}: seed {sorted(clash)[0]} is already in an earlier result")
        seeds += r["settings"]["seeds"]
    splits = [k for k in ("validation", "test") if k in first]
    out = {"settings": {**first["settings"], "seeds": seeds},
           "seconds": {k: v for r in results for k, v in r["seconds"].items()}}
    for split in splits:
        base = first[split]["sft_cases"]
        for name, r in named.items():
            if split not in r or r[split]["sft_cases"] != base:
                raise ValueError(f"{name}: its SFT answers on the {split} split differ from {first_name}'s "
                                 "(a different SFT run or tasks)")
        out[split] = {"n": len(base), "sft": sum(base) / len(base), "sft_cases": base}
        for loss in first["settings"]["losses"]:
            runs = [case for r in results for case in r[split][loss]["cases"]]
            out[split][loss] = {"mean": sum(map(sum, runs)) / sum(map(len, runs)),
                                "per_seed": [sum(r) / len(r) for r in runs], "vs_sft": paired(runs, base),
                                "cases": runs}
    return out


def table(result: dict, split: str = "test", markdown: bool = False) -> str:
    r = result[split]
    rows = [("SFT (before)", f"{r['sft']:.1%}", "", "")]
    for loss in result.get("settings", {}).get("losses", LOSSES):
        d = r[loss]
        seeds = ", ".join(f"{x:.1%}" for x in d["per_seed"])
        diff = d["vs_sft"]
        rows.append((f"SFT + agent RL ({loss})", f"{d['mean']:.1%} ({seeds})",
                     f"{diff['mean'] * 100:+.1f} pt [{diff['ci95'][0] * 100:+.1f}, {diff['ci95'][1] * 100:+.1f}]", ""))
    head = (f"Tool-use accuracy, {split} split ({r['n']} cases)", "accuracy (per seed)", "vs SFT, 95% CI", "")
    if markdown:
        lines = ["| " + " | ".join(head[:3]) + " |", "|---|---|---|"]
        lines += ["| " + " | ".join(row[:3]) + " |" for row in rows]
        return "\n".join(lines)
    return "\n".join(f"{a:<34} {b:<28} {c}" for a, b, c, _ in [head, *rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agent_gain", description=__doc__.split("\n")[0])
    p.add_argument("--rl-steps", type=int, default=150)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    p.add_argument("--work-dir", type=Path, help="keep the demo and the runs here")
    p.add_argument("--sft-run", type=Path, help="reuse this demo SFT run (W/demo/runs/sft of an earlier --work-dir)")
    p.add_argument("--split", choices=("validation", "test", "both"), default="both")
    p.add_argument("--loss", nargs="+", choices=LOSSES, default=list(LOSSES))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the RL runs, e.g. optim.lr=5e-5 (tune on --split validation only)")
    p.add_argument("--explore", type=int, metavar="N", help="instead of training: per tool, N training cases "
                   "answered greedily and 8 times sampled (what RL can reinforce), from --sft-run or --checkpoint")
    p.add_argument("--checkpoint", type=Path, help="with --explore: the model to look at (default: --sft-run)")
    p.add_argument("--model", default="tiny", help="the preset the demo SFT trains (default tiny; small: "
                   "MiniMind2-small, ~35 min of CPU for the demo and ~30 s per agent RL step on one core with native bf16)")
    p.add_argument("--device", default="cpu", help="where the demo, the RL runs and the scoring run (cuda on a GPU "
                   "machine: the published figures are CPU)")
    p.add_argument("--combine", nargs="+", type=Path, metavar="JSON",
                   help="instead of training: report these --json results of single-seed runs as one run")
    args = p.parse_args(argv)
    if args.combine:
        try:
            result = combine({str(f): json.loads(f.read_text(encoding="utf-8")) for f in args.combine})
        except ValueError as e:
            p.error(str(e))
        for split in [n for n in ("test", "validation") if n in result]:
            print(table(result, split, args.markdown) + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return 0
    if args.explore:
        import torch

        torch.set_num_threads(args.threads)
        if not args.work_dir:
            p.error("--explore needs --work-dir (and --sft-run or --checkpoint, or it trains the demo SFT there)")
        if not (args.checkpoint or args.sft_run):
            args.sft_run, _ = _demo_sft(args.work_dir, args.threads, args.model, args.device)
        data = Path(args.sft_run).parent.parent / "data" if args.sft_run else None
        splits = _split(data / "agent_rl.jsonl", args.work_dir) if data else {"train": args.work_dir / "agent_train.jsonl"}
        print(explore_table(explore(args.checkpoint or args.sft_run, splits["train"], args.explore,
                                          device=args.device)))
        return 0
    names = ("validation", "test") if args.split == "both" else (args.split,)
    result = run(args.rl_steps, tuple(args.seeds), args.threads, args.work_dir, args.sft_run, args.set, names,
                 tuple(args.loss), args.model, args.device)
    for split in [n for n in ("test", "validation") if n in names]:
        print(table(result, split, args.markdown) + "\n")
    print(json.dumps({"seconds": result["seconds"], "settings": result["settings"]}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
