"""`python -m bench`: run every benchmark, print one table, write bench/results.json.

    python -m bench                      # quick settings (minutes on 2 cores)
    python -m bench --full               # the settings the per-area sections of docs/benchmarks.md use
    python -m bench --only ingest_rate --only cold_start
    python -m bench --markdown           # the table as Markdown (docs/benchmarks.md, "Suite")
    python -m bench --show --markdown    # the table of the last results.json, without running anything

Each benchmark runs in its own child process (`python -m bench --child NAME`) with a time limit: a missing
module, an exception, a crash inside llama.cpp or a timeout marks that row and the others still run. With
--only, the other entries of an existing results.json are kept.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results.json"

# name -> (candidate (module, function) pairs, quick kwargs, full kwargs); quick None = only with --full/--only
BENCHES: dict[str, tuple[list[tuple[str, str]], dict | None, dict]] = {
    "train_throughput": ([("bench.train_throughput", "run")],
                         {"batch_size": 4, "steps": 2, "records": 4000, "threads": 1, "repeats": 2},
                         {"threads": 1}),
    "infer_speed": ([("bench.infer_speed", "run")], {"repeats": 1, "threads": 1}, {"threads": 1}),
    "export_speed": ([("bench.export_speed", "run"), ("core.export.bench", "bench_export")],
                     {"check": False}, {"check": True}),
    "ingest_rate": ([("bench.ingest_rate", "run")], {"events": 20000}, {"events": 100000}),
    "ui_stall": ([("bench.ui_stall", "run")], {"seconds": 3.0}, {"seconds": 10.0}),
    "cold_start": ([("bench.cold_start", "run")], {"launches": 2}, {"launches": 3}),
    "rl_gain": ([("bench.rl_gain", "run")], None, {}),
}


# ------------------------------------------------------------------------------------------- one benchmark
def _resolve(name: str):
    for module, func in BENCHES[name][0]:
        if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None or importlib.util.find_spec(module) is None:
            continue
        return getattr(importlib.import_module(module), func)
    raise ModuleNotFoundError(f"none of {', '.join(m for m, _ in BENCHES[name][0])} exists in this checkout")


def child(name: str, full: bool, out: str) -> int:
    kwargs = BENCHES[name][2] if full else (BENCHES[name][1] or BENCHES[name][2])
    try:
        func = _resolve(name)
    except ModuleNotFoundError as exc:  # the benchmark module itself is absent
        func, result = None, {"ok": False, "missing": True, "error": str(exc)}
    if func is not None:
        try:
            result = {"ok": True, "result": func(**kwargs), "settings": kwargs}
        except Exception as exc:  # the suite reports it and goes on
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(out).write_text(json.dumps(result, default=str))
    return 0


def run_one(name: str, full: bool, timeout: float) -> dict:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench", "--child", name, "--out", str(out)] + (["--full"] if full else [])
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"timed out after {timeout:.0f} s", "seconds": round(timeout)}
        seconds = round(time.perf_counter() - t0, 1)
        if not out.is_file():
            tail = (proc.stderr or proc.stdout)[-800:].strip()
            return {"ok": False, "error": f"the benchmark process died (rc {proc.returncode}): {tail}",
                    "seconds": seconds}
        result = json.loads(out.read_text())
    result["seconds"] = seconds
    return result


# ------------------------------------------------------------------------------------------- the table
def _f(x, digits=0, unit=""):
    return "n/a" if x is None else f"{x:,.{digits}f}{unit}"


def rows_for(name: str, r: dict) -> list[tuple[str, str, str]]:
    """(figure, value, comparison) rows of one benchmark's result."""
    if name == "train_throughput":
        p, n, ratio = r["rows"]["packed"], r["rows"]["naive"], r["ratio"]
        where = f"{r['preset']}, {r.get('device', 'cpu')} {r.get('precision', 'fp32')}, {r['threads']} thr, " \
                f"batch {r['batch_size']}x{r['seq_len']}, median of {len(r['repeats'])} interleaved repeats"
        out = [(f"useful tok/s, packed ({where})", _f(p["useful_tok_s"]["median"]),
                f"{ratio['median']:.2f}x pad-every-sample (per repeat {ratio['min']:.2f}-{ratio['max']:.2f}x)"),
               ("useful tok/s, pad every sample (MiniMind)", _f(n["useful_tok_s"]["median"]),
                f"padding {n['padding']:.0%} of all {r['slice']['documents']:,} documents")]
        if p.get("mfu") is not None:
            out.append(("MFU, packed", f"{p['mfu']:.1%}", p.get("gpu", "")))
        return out
    if name == "infer_speed":
        base = r["rows"]["torch f32"]
        out = [(f"decode tok/s, {k} ({r['preset']}, {r['threads']} thr)", _f(v["decode_tok_s"], 1),
                f"{v['decode_tok_s'] / base['decode_tok_s']:.2f}x torch") for k, v in r["rows"].items()]
        out += [(f"prompt tok/s, {k}", _f(v["prompt_tok_s"]), f"{v['prompt_tok_s'] / base['prompt_tok_s']:.2f}x torch")
                for k, v in r["rows"].items()]
        if "llama_cpp" in r:
            out.append(("llama.cpp", r["llama_cpp"], ""))
        return out
    if name == "export_speed":
        f32 = r.get("f32", {}).get("write_s")
        return [(f"GGUF export {q} ({r.get('preset')}, {r.get('params', 0):,} params)", _f(v["write_s"], 2, " s"),
                 f"{v['file_mib']} MiB" + (f", {v['write_s'] / f32:.2f}x f32 time" if f32 else ""))
                for q, v in r.items() if isinstance(v, dict)]
    if name == "ingest_rate":
        return [(f"SQLite ingestion, RunStore.add_events ({r['batch']}/transaction)", _f(r["batched_events_s"]) + " ev/s",
                 f"{r['ratio']:.1f}x one event per transaction ({_f(r['single_events_s'])} ev/s)")]
    if name == "ui_stall":
        i = r["ingest"]
        return [(f"UI event-loop max stall, {r['events']} events at {r['rate']:.0f}/s", _f(i["max_stall_ms"], 1, " ms"),
                 f"{i['max_stall_ms'] / r['target_ms']:.2f}x the {r['target_ms']:.0f} ms target; p99 {i['p99_ms']} ms"),
                ("UI event-loop max stall, idle", _f(r["idle"]["max_stall_ms"], 1, " ms"), "")]
    if name == "cold_start":
        return [("studio start to first paint, cold", _f(r["cold_s"], 2, " s"), "offscreen, empty workspace"),
                ("studio start to first paint, warm", _f(r["warm_s"], 2, " s"),
                 f"window built at {r['launches'][-1]['window_built']:.2f} s")]
    if name == "rl_gain":
        res, seeds = r["results"]["test"], len(r["config"]["seeds"])
        out = [("RL test accuracy, SFT", f"{res['sft']['accuracy']['mean']:.1%}",
                f"{r['config']['test_prompts']} test prompts, greedy")]
        for k, v in res.items():
            if k != "sft":
                d = v["vs_sft"]["accuracy"]
                out.append((f"RL test accuracy, SFT + {k.upper()} ({seeds} seeds)", f"{v['accuracy']['mean']:.1%}",
                            f"{100 * d['mean']:+.1f} pt vs SFT, 95% CI [{100 * d['ci95'][0]:+.1f}, "
                            f"{100 * d['ci95'][1]:+.1f}]"))
        return out
    return [(k, str(v), "") for k, v in r.items() if isinstance(v, (int, float))]


def table(results: dict, markdown: bool = False) -> str:
    head = ["benchmark", "figure", "value", "comparison", "time (s)"]
    body = []
    for name, entry in results["benchmarks"].items():
        secs = str(entry.get("seconds", ""))
        if not entry.get("ok"):
            label = "MISSING" if entry.get("missing") else "FAILED"
            body.append([name, label, "-", entry.get("error", "")[:160].replace("\n", " ").replace("|", "/"), secs])
            continue
        try:
            rows = rows_for(name, entry["result"])
        except (KeyError, TypeError, ZeroDivisionError) as exc:
            rows = [("(unreadable result)", "-", f"{type(exc).__name__}: {exc}")]
        for i, (fig, val, cmp) in enumerate(rows):
            body.append([name if i == 0 else "", fig, val, cmp, secs if i == 0 else ""])
    m = results["machine"]
    title = (f"{m.get('cpu')}, {m.get('cores')} cores, load {m.get('load_average')}, torch {m.get('torch')}, "
             f"llama-cpp-python {m.get('llama_cpp')}, GPU {m.get('gpu') or 'none'}, {m.get('date')}, "
             f"{'full' if results.get('full') else 'quick'} settings")
    if markdown:
        lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [min(70, max(len(r[i]) for r in [head] + body)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([title, fmt.format(*head)] + [fmt.format(*(c[:70] for c in r)) for r in body])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="longer settings (the per-area docs' figures)")
    p.add_argument("--only", action="append", choices=sorted(BENCHES), metavar="NAME",
                   help=f"run only this one (repeatable): {', '.join(BENCHES)}")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark (default 1800)")
    p.add_argument("--out", default=str(RESULTS), help="results file (default bench/results.json)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--show", action="store_true", help="print the table of the results file without running")
    p.add_argument("--child", choices=sorted(BENCHES), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        return child(a.child, a.full, a.out)

    if a.show:
        print(table(json.loads(Path(a.out).read_text()), a.markdown))
        return 0
    from bench.common import machine_info

    names = a.only or [n for n, spec in BENCHES.items() if a.full or spec[1] is not None]
    out = Path(a.out)
    results = {"machine": machine_info(), "full": a.full, "benchmarks": {}}
    if a.only and out.is_file():
        try:
            results["benchmarks"] = json.loads(out.read_text()).get("benchmarks", {})
        except ValueError:
            pass
    for name in names:
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        results["benchmarks"][name] = run_one(name, a.full, a.timeout)
        out.write_text(json.dumps(results, indent=1, default=str) + "\n")  # keep what is done if interrupted
        print(f"[bench] {name}: {'ok' if results['benchmarks'][name].get('ok') else 'FAILED'} "
              f"({results['benchmarks'][name].get('seconds')} s)", file=sys.stderr, flush=True)
    print(table(results, a.markdown))
    return 0 if all(e.get("ok") for n, e in results["benchmarks"].items() if n in names) else 1


if __name__ == "__main__":
    sys.exit(main())
