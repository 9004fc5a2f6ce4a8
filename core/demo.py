"""The one-command demo: data → tokenizer → pretrain → SFT → GGUF (q8_0, parity-checked) → chat through llama.cpp
→ tool use measured on held-out prompts (core.eval.tool_use).

Training runs as subprocesses of the real worker (`python -m core.train --config FILE`), the same path the studio
takes, and the demo reads their JSON event stream (docs/events.md) for progress and figures. Progress goes to
stderr; `run_demo` returns a report dict (also written to `<out>/demo_report.json`).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from core.process_identity import trainer_command

REPO = Path(__file__).resolve().parents[1]

Say = Callable[[str], None]


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo run. FULL fits the 5-minute budget on 2 CPU cores (measured: docs/quickstart.md)."""
    vocab_size: int
    pretrain_steps: int
    sft_steps: int
    batch_size: int
    seq_len: int
    max_len: int  # SFT's longest sample: a tool conversation carries the tools block (~600 tokens)
    max_new_tokens: int
    prompts: tuple[str, ...]
    tool_prompts: int  # held-out agent_rl.jsonl prompts the tool-use measurement runs (0 = all)
    data_sizes: tuple[tuple[str, int], ...] = ()  # records per demo file; () = the built-in sizes
    model: str = "tiny"  # the model preset; another (bench.agent_gain --model small) trains at upstream's rates
    precision: str = "fp32"
    device: str = "cpu"


# digits split one by one (core.tokenizer.train.QWEN2_SPLIT): the model copies numbers from a question into a tool
# call, and from the tool's result into its answer, token for token
PRE_TOKENIZER = "qwen2"
PROMPTS = ("What is 3 + 4?", "What colour is the sky?", "What sound does a cat make?", "2 加 3 等于几？")
FULL = DemoPlan(vocab_size=2048, pretrain_steps=600, sft_steps=250, batch_size=16, seq_len=128, max_len=768,
                max_new_tokens=64, prompts=PROMPTS, tool_prompts=0)
FAST = DemoPlan(vocab_size=384, pretrain_steps=4, sft_steps=3, batch_size=4, seq_len=32, max_len=64,
                max_new_tokens=8, prompts=PROMPTS[:2], tool_prompts=4,
                data_sizes=(("pretrain", 300), ("sft", 200), ("dpo", 10), ("rl", 10), ("sft_tools", 40),
                            ("agent_rl", 20)))


class DemoError(RuntimeError):
    """A demo stage failed; the message names the stage, what happened and where its log is."""


def stderr_say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def trainer_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:  # on a busy machine one thread per trainer beats two fighting for the same cores
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def train_config(method: str, plan: DemoPlan, data: Path | list[Path], tokenizer: Path, run_dir: Path,
                 init: Path | None) -> dict:
    steps = plan.pretrain_steps if method == "pretrain" else plan.sft_steps
    files = [str(f) for f in (data if isinstance(data, list) else [data])]
    return {
        "method": method, "model": plan.model, "run_dir": str(run_dir), "init": str(init) if init else None,
        "max_steps": steps, "batch_size": plan.batch_size, "device": plan.device, "precision": plan.precision,
        "log_every": max(1, steps // 20), "save_every": 0, "keep_last": 1,
        "data": {"files": files, "tokenizer": str(tokenizer), "seq_len": plan.seq_len,
                 "max_len": plan.max_len, "cache_dir": str(run_dir.parent / "cache")},
        # A short warm-up; SFT starts from a trained model, so half the peak LR. 1e-3, not higher: the tiny model
        # learns to copy (a question's numbers into a tool call, the tool's result into the answer) within about
        # 400-600 pretraining steps at 1e-3, and not within 640 at 3e-3 (docs/benchmarks.md#demo-tool-use).
        # A 512-wide preset pretrains at upstream's 5e-4 (core.methods.UPSTREAM_LR), SFT again at half of that.
        "optim": {"lr": (1e-3 if plan.model == "tiny" else 5e-4) / (1 if method == "pretrain" else 2),
                  "warmup_steps": max(1, steps // 20),
                  "schedule": "cosine"},
    }


def run_trainer(method: str, config: dict, config_file: Path, say: Say, threads: int | None = None) -> dict:
    """Run `python -m core.train --config config_file`, relay progress, return the stage's figures."""
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    log_file = config_file.with_suffix(".log")
    argv = trainer_command() + ["--config", str(config_file)]
    say(f"{method}: {' '.join(argv[1:])}")
    losses: list[tuple[int, float]] = []
    tokens_per_s: list[float] = []
    finished: dict = {}
    total = config["max_steps"]
    start = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log, subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, text=True, env=trainer_env(threads), cwd=str(REPO)) as proc:
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("type") == "run_started":
                say(f"{method}: {event.get('params', 0):,} parameters, {event.get('dataset_tokens', 0):,} tokens, "
                    f"{event.get('total_steps', total)} steps on {event.get('device')}")
            elif event.get("type") == "metric":
                metrics = event.get("metrics", {})
                if metrics.get("loss") is not None:
                    losses.append((event["step"], float(metrics["loss"])))
                if metrics.get("tokens_per_s"):
                    tokens_per_s.append(float(metrics["tokens_per_s"]))
                say(f"{method}: step {event['step']}/{total} loss {metrics.get('loss', float('nan')):.3f}")
            elif event.get("type") in ("error", "warning"):
                say(f"{method}: {event['type']}: {event.get('message')}")
            elif event.get("type") == "run_finished":
                finished = event
        code = proc.wait()
    if code != 0 or finished.get("status") != "completed":
        tail = log_file.read_text(encoding="utf-8", errors="replace")[-1500:]
        raise DemoError(f"{method} training failed (exit {code}, status {finished.get('status')!r}: "
                        f"{finished.get('message')}). Full log: {log_file}\n{tail}")
    if not losses:
        raise DemoError(f"{method} training reported no loss; see {log_file}")
    return {"run_dir": config["run_dir"], "steps": losses[-1][0], "loss_first": losses[0][1],
            "loss_last": losses[-1][1], "tokens_per_s": round(sum(tokens_per_s) / len(tokens_per_s), 1)
            if tokens_per_s else None, "seconds": round(time.perf_counter() - start, 1), "log": str(log_file)}


def chat_replies(gguf_file: Path, plan: DemoPlan, say: Say) -> list[dict]:
    """Greedy replies to the demo prompts through llama.cpp (the exported file), with decode speed."""
    from core.infer import SamplingParams, open_backend

    replies = []
    llm = open_backend(gguf_file)
    try:
        for prompt in plan.prompts:
            text = llm.chat([{"role": "user", "content": prompt}],
                            SamplingParams(temperature=0.0, max_new_tokens=plan.max_new_tokens, seed=0))
            u = llm.usage
            tps = u.completion_tokens / u.decode_s if u.decode_s > 0 else None
            replies.append({"prompt": prompt, "reply": text.strip(), "completion_tokens": u.completion_tokens,
                            "tokens_per_s": round(tps, 1) if tps else None})
            say(f"chat: {prompt!r} -> {text.strip()!r}")
    finally:
        llm.close()  # llama.cpp raises from Llama.__del__ at interpreter exit otherwise
    return replies


def held_out_tool_cases(agent_rl: Path, limit: int = 0) -> list:
    """The held-out prompts of a demo agent_rl.jsonl (`core.data.demo.agent_rl_held_out`) as tool-use cases."""
    from core.data.demo import agent_rl_held_out
    from core.eval.tool_use import load_cases

    cases = [case for i, case in enumerate(load_cases(agent_rl)) if agent_rl_held_out(i)]
    return cases[:limit] if limit else cases


def measure_tool_use(gguf_file: Path, agent_rl: Path, plan: DemoPlan, say: Say) -> dict:
    """`minimind eval tools` on the held-out demo tool prompts, through llama.cpp (the exported file): the share
    of well-formed calls of the right tool, and the answer accuracy with the tools executed and without tools."""
    from core.eval.tool_use import evaluate_tool_use
    from core.infer import open_backend

    start = time.perf_counter()
    llm = open_backend(gguf_file)
    try:
        result = evaluate_tool_use(llm, held_out_tool_cases(agent_rl, plan.tool_prompts),
                                   max_new_tokens=plan.max_new_tokens)
    finally:
        llm.close()
    cases = result.pop("cases")
    result["right_call_rate"] = sum(c["well_formed"] and c["right_tool"] for c in cases) / max(len(cases), 1)
    result["seconds"] = round(time.perf_counter() - start, 1)
    say(f"tools: {result['prompts']} held-out prompts, well-formed call of the right tool "
        f"{result['right_call_rate']:.0%}, answers right {result['accuracy_with_tools']:.0%} with the tools run, "
        f"{result['accuracy_without_tools']:.0%} without tools")
    for ex in result["examples"]:
        say(f"tools: {ex['question']!r} -> {ex['calls']} -> {ex['answer']!r}")
    return result


def stage_files(data_dir: Path) -> dict[str, list[Path]]:
    """The demo files each stage reads: SFT learns the plain and the tool conversations, and the tokenizer is
    trained on everything the model reads (so the tools block gets its own merges)."""
    from core.data.demo import demo_tool_files

    plain = {kind: Path(data_dir) / f"{kind}.jsonl" for kind in ("pretrain", "sft")}
    sft = [plain["sft"], demo_tool_files(data_dir)["sft_tools"]]
    return {"tokenizer": [plain["pretrain"], *sft], "pretrain": [plain["pretrain"]], "sft": sft}


def train_demo_tokenizer(files, plan: DemoPlan, out_dir: Path, progress=None):
    """The demo's tokenizer (the demo, the studio's first-run guide and scripts/screenshots.py train it alike):
    byte-level BPE of the plan's size over everything the model reads, digits split one by one."""
    from core.tokenizer import train_tokenizer

    return train_tokenizer(files, vocab_size=plan.vocab_size, out_dir=out_dir, progress=progress,
                           pre_tokenizer=PRE_TOKENIZER)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the trainers, the parity check)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_demo(out_dir: str | Path, fast: bool = False, say: Say = stderr_say, threads: int | None = None) -> dict:
    """Run the whole pipeline into `out_dir`; return (and write) the report. Raises DemoError on failure."""
    from core.data import generate_demo_data
    from core.data.demo import demo_tool_files
    from core.export import export_gguf

    plan = FAST if fast else FULL
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict = {"out": str(out), "mode": "fast" if fast else "full", "plan": asdict(plan), "threads": threads}

    say(f"1/7 data: writing the built-in demo datasets to {out / 'data'}")
    data = generate_demo_data(out / "data", sizes=dict(plan.data_sizes) or None)
    report["data"] = {kind: str(path) for kind, path in {**data, **demo_tool_files(out / "data")}.items()}
    files = stage_files(out / "data")

    say(f"2/7 tokenizer: byte-level BPE, vocab {plan.vocab_size}, one token per digit")
    start = time.perf_counter()
    tok = train_demo_tokenizer(files["tokenizer"], plan, out / "tokenizer")
    report["tokenizer"] = {"dir": str(out / "tokenizer"), "vocab_size": tok.vocab_size,
                           "seconds": round(time.perf_counter() - start, 1)}

    (out / "configs").mkdir(exist_ok=True)
    stages = {}
    init = None
    for n, method in ((3, "pretrain"), (4, "sft")):
        say(f"{n}/7 {method}: {plan.model} preset, {getattr(plan, method + '_steps')} steps")
        cfg = train_config(method, plan, files[method], out / "tokenizer", out / "runs" / method, init)
        stages[method] = run_trainer(method, cfg, out / "configs" / f"{method}.json", say, threads)
        init = out / "runs" / method
    report.update(stages)

    gguf_file = out / "export" / "minimind-demo-q8_0.gguf"
    say(f"5/7 export: GGUF q8_0 + parity check against llama.cpp -> {gguf_file}")
    try:
        exported = export_gguf(out / "runs" / "sft", gguf_file, "q8_0")
    except Exception as exc:  # ParityError, UnsupportedExport, a llama.cpp crash: all end the demo here
        raise DemoError(f"export failed: {exc}") from exc
    parity = exported.get("parity") or {}
    report["export"] = {"file": exported["path"], "bytes": exported["file_bytes"], "arch": exported["arch"],
                        "modelfile": exported.get("modelfile"), "seconds": round(exported["seconds"], 1),
                        "parity": {k: parity.get(k) for k in ("passed", "tokenizer_match", "max_abs_logit_diff",
                                                              "rel_logit_diff", "top1_agreement",
                                                              "greedy_identical")}}

    say("6/7 chat: greedy replies through llama.cpp")
    report["chat"] = chat_replies(gguf_file, plan, say)
    say("7/7 tools: held-out tool prompts with the tools executed, and without tools")
    report["tools"] = measure_tool_use(gguf_file, demo_tool_files(out / "data")["agent_rl"], plan, say)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["cpu_seconds"] = round(cpu_seconds(), 1)  # this process + its trainers: comparable across machine loads
    (out / "demo_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def format_report(r: dict) -> str:
    """The human summary printed at the end of `minimind demo`."""
    p, e = r["pretrain"], r["export"]
    s = r["sft"]
    par = e["parity"]
    speeds = [c["tokens_per_s"] for c in r["chat"] if c["tokens_per_s"]]
    lines = [
        f"MiniMind demo ({r['mode']}) finished in {r['seconds']:.0f} s ({r.get('cpu_seconds', 0):.0f} s of CPU time)"
        f" — everything is in {r['out']}",
        f"  data       {Path(r['data']['pretrain']).parent}",
        f"  tokenizer  {r['tokenizer']['dir']} (vocab {r['tokenizer']['vocab_size']})",
        f"  pretrain   {p['run_dir']}: loss {p['loss_first']:.3f} -> {p['loss_last']:.3f} in {p['steps']} steps, "
        f"{p['seconds']:.0f} s, {p['tokens_per_s'] or 0:,.0f} tokens/s",
        f"  sft        {s['run_dir']}: loss {s['loss_first']:.3f} -> {s['loss_last']:.3f} in {s['steps']} steps, "
        f"{s['seconds']:.0f} s, {s['tokens_per_s'] or 0:,.0f} tokens/s",
        f"  gguf       {e['file']} ({e['bytes'] / 2**20:.2f} MiB, {e['arch']}, q8_0)",
        f"  parity     {'PASSED' if par['passed'] else 'FAILED'}: tokenizer "
        f"{'identical' if par['tokenizer_match'] else 'different'}, max |Δlogit| {par['max_abs_logit_diff']:.3g}, "
        f"greedy agreement {par['top1_agreement']:.0%}",
    ]
    if e.get("modelfile"):
        lines.append(f"  ollama     ollama create minimind-demo -f {e['modelfile']}")
    lines.append(f"  chat (llama.cpp, {sum(speeds) / len(speeds) if speeds else 0:,.0f} tokens/s decode):")
    lines += [f"    > {c['prompt']}\n      {c['reply']}" for c in r["chat"]]
    if r.get("tools"):
        t = r["tools"]
        lines.append(f"  tools      {t['prompts']} held-out tool prompts: well-formed call of the right tool "
                     f"{t['right_call_rate']:.0%}; answer right {t['accuracy_with_tools']:.0%} with the tools run, "
                     f"{t['accuracy_without_tools']:.0%} without tools")
        lines += [f"    > {ex['question']}\n      {' '.join(c['name'] + c['arguments'] for c in ex['calls'])} -> "
                  f"{ex['answer']}" for ex in t["examples"][:2]]
    lines.append(f"  next: minimind chat --model {e['file']}   |   python app.py   |   "
                 f"python -m webdemo --model {e['file']}")
    return "\n".join(lines)
