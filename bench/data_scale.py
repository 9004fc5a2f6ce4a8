"""`python -m bench.data_scale`: a corpus of real size, from the file to the first training step.

    python -m bench.data_scale                      # generates a 1 GB MiniMind-style pretrain JSONL
    python -m bench.data_scale --size-mb 200        # a smaller one (a shared 2-core machine)
    python -m bench.data_scale --path pretrain_hq.jsonl --tokenizer DIR

It reports, in one run:
- the studio's time to open the file (page 1, then the line index it pages with) and to validate it (the Datasets
  pane's own functions);
- the token cache's build throughput against tokenizers' `encode_batch` on the same documents, as a ratio:
  interleaved repeats on the first `--sample-mb` MB (the build reads, checks, tokenizes and writes the file; the
  baseline only tokenizes texts already in memory), beside the two ways of using every core that were weighed
  (tokenizers' own thread pool in one process, or one single-threaded process per core);
- the time from Start (launching the trainer, as the studio does) to the first training step with a cold cache
  (the whole corpus is tokenized first) and with a warm one, and the trainer's peak RSS (VmHWM) in both.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
BATCH = 512  # texts per encode call, as the cache build does (core/data/cache_build.py BATCH_RECORDS)


# ---- the corpus -------------------------------------------------------------------------------------------------
def generate_corpus(path: Path, size_mb: float, seed: int = 0) -> Path:
    """A MiniMind-style pretrain JSONL of about `size_mb` MB: each record joins 2-12 documents of the shared
    pretrain data (English and Chinese; ~1.9 KB a record on average, as pretrain_hq.jsonl), else of the demo
    data. Deterministic; re-used when a file of that size is there already."""
    target = int(size_mb * 1e6)
    if path.is_file() and abs(path.stat().st_size - target) < 4096 + 100_000:
        return path
    source = SHARED / "pretrain.jsonl"
    if not source.is_file():
        source = REPO / "resources" / "demo" / "pretrain.jsonl"
    docs = [json.loads(line)["text"] for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path.with_suffix(".tmp"), "w", encoding="utf-8") as out:
        while written < target:
            lines = []
            for _ in range(1000):
                text = "\n".join(rng.choice(docs) for _ in range(rng.randint(2, 12)))
                lines.append(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            chunk = "".join(lines)
            out.write(chunk)
            written += len(chunk.encode("utf-8"))
    os.replace(path.with_suffix(".tmp"), path)
    return path


def head_bytes(src: Path, dst: Path, size: int) -> Path:
    """The whole lines of `src` within its first `size` bytes."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        data = f.read(size)
        out.write(data[:data.rfind(b"\n") + 1])
    return dst


# ---- the studio's open and validate ------------------------------------------------------------------------------
def studio_open_and_validate(path: Path) -> dict:
    from studio.panes.datasets.index import LineIndex, head_lines
    from studio.panes.datasets.presenter import validate_file

    def quiet(*_args):
        return None

    t0 = time.perf_counter()
    head_lines(path, 20)
    first_page = time.perf_counter() - t0
    index = LineIndex(path)
    index.build(progress=quiet, cancelled=lambda: False)
    indexed = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = validate_file(path, "pretrain", 200, quiet, lambda: False)
    return {"first_page_s": first_page, "index_s": indexed, "lines": index.line_count,
            "validate_s": time.perf_counter() - t0, "records": result["records"], "bad": result["skipped"]}


# ---- throughput: the cache build against encode_batch ------------------------------------------------------------
def _texts(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def encode_batch_ids(backend, texts: list[str], fast: bool = False) -> int:
    """tokenizers' own batch encoding of `texts` into id lists, BATCH at a time; returns the token count."""
    encode = backend.encode_batch_fast if fast else backend.encode_batch
    return sum(len(e.ids) for i in range(0, len(texts), BATCH) for e in encode(texts[i:i + BATCH],
                                                                               add_special_tokens=False))


_WORKER = None


def _worker_init(tokenizer_file: str) -> None:
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per process
    from tokenizers import Tokenizer

    _WORKER = Tokenizer.from_file(tokenizer_file)


def _worker_encode(texts: list[str]) -> bytes:
    import numpy as np

    ids = [e.ids for e in _WORKER.encode_batch_fast(texts, add_special_tokens=False)]
    return np.concatenate([np.asarray(x, dtype=np.uint32) for x in ids]).tobytes()


def processes_encode(pool, texts: list[str]) -> int:
    """One single-threaded tokenizer per core (worker processes), results back as arrays, in order."""
    return sum(len(b) // 4 for b in pool.imap(_worker_encode, [texts[i:i + BATCH]
                                                               for i in range(0, len(texts), BATCH)]))


def cache_build(sample: Path, tokenizer, work: Path) -> int:
    from core.data.datasets import PretrainDataset

    cache = work / "ratio-cache"
    shutil.rmtree(cache, ignore_errors=True)
    return PretrainDataset([sample], tokenizer, 256, cache).num_tokens


def throughput(corpus: Path, tokenizer_dir: Path, work: Path, sample_mb: float, repeats: int) -> dict:
    import core.data.datasets  # noqa: F401 (torch: imported before any timing)
    from core.tokenizer import MiniMindTokenizer

    tok = MiniMindTokenizer.load(tokenizer_dir)
    sample = head_bytes(corpus, work / "sample.jsonl", int(sample_mb * 1e6))
    texts = _texts(sample)
    size = sample.stat().st_size
    ways = {"encode_batch": lambda: encode_batch_ids(tok.backend, texts),
            "encode_batch_fast": lambda: encode_batch_ids(tok.backend, texts, fast=True),
            "processes": lambda: processes_encode(pool, texts),
            "cache_build": lambda: cache_build(sample, tok, work)}
    times: dict[str, list[float]] = {k: [] for k in ways}
    with mp.get_context("spawn").Pool(os.cpu_count(), _worker_init, (str(tokenizer_dir / "tokenizer.json"),)) as pool:
        processes_encode(pool, texts[:BATCH * os.cpu_count()])  # start every worker first
        for _ in range(repeats):  # interleaved: load on a shared machine falls on every way alike
            for name, fn in ways.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"sample_mb": size / 1e6, "records": len(texts), "repeats": repeats, "cores": os.cpu_count(),
            "seconds": times, "mb_s": {k: size / 1e6 / v for k, v in med.items()},
            "ratio": med["encode_batch"] / med["cache_build"],
            "processes_vs_threads": med["encode_batch_fast"] / med["processes"]}


# ---- Start to the first step ------------------------------------------------------------------------------------
def _vm_hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def start_to_first_step(corpus: Path, tokenizer_dir: Path, run_dir: Path, cache_dir: Path) -> dict:
    """Launch the trainer as the studio does (`python -m core.train --config`) and time its first step."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    config = {"method": "pretrain", "model": "tiny", "run_dir": str(run_dir), "max_steps": 2, "batch_size": 4,
              "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 0,
              "data": {"files": [str(corpus)], "seq_len": 256, "tokenizer": str(tokenizer_dir),
                       "cache_dir": str(cache_dir)}}
    (run_dir / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "core.train", "--config", str(run_dir / "config.json")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first_step = prepared = None
    peak = 0.0
    prepare_events = 0
    for line in proc.stdout:  # one event a line; VmHWM sampled as they come (the trainer reports ~2/s preparing)
        peak = max(peak, _vm_hwm_mb(proc.pid) or 0.0)
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("type") == "prepare":
            prepare_events += 1
            if event.get("state") == "done":
                prepared = time.perf_counter() - t0
        if event.get("type") == "metric" and first_step is None:
            first_step = time.perf_counter() - t0
    proc.wait()
    return {"first_step_s": first_step, "prepared_s": prepared, "prepare_events": prepare_events,
            "peak_rss_mb": peak, "exit": proc.returncode}


# ---- report -----------------------------------------------------------------------------------------------------
def run(path: str | None = None, size_mb: float = 1024, tokenizer: str | None = None, work: str | None = None,
        sample_mb: float = 8, repeats: int = 3) -> dict:
    work_dir = Path(work or REPO / "bench" / "_data_scale")
    work_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_dir = Path(tokenizer) if tokenizer else SHARED / "minimind-tokenizers" / "v3"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise SystemExit(f"{tokenizer_dir}: no tokenizer.json; pass --tokenizer DIR")
    t0 = time.perf_counter()
    corpus = Path(path) if path else generate_corpus(work_dir / f"corpus-{size_mb:g}mb.jsonl", size_mb)
    generated = time.perf_counter() - t0
    result = {"corpus": str(corpus), "corpus_mb": corpus.stat().st_size / 1e6, "generate_s": generated,
              "tokenizer": str(tokenizer_dir)}
    result["studio"] = studio_open_and_validate(corpus)
    result["throughput"] = throughput(corpus, tokenizer_dir, work_dir, sample_mb, repeats)
    cache_dir = work_dir / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    result["cold"] = start_to_first_step(corpus, tokenizer_dir, work_dir / "run-cold", cache_dir)
    result["warm"] = start_to_first_step(corpus, tokenizer_dir, work_dir / "run-warm", cache_dir)
    meta = json.loads(next(cache_dir.glob("pretrain-*/meta.json")).read_text())
    result["full_build"] = {"seconds": meta["seconds"], "mb_s": result["corpus_mb"] / meta["seconds"],
                            "tokens": sum(meta["num_tokens"].values()), "records": meta["report"]["records"]}
    return result


def table(r: dict) -> str:
    t, s, c, w = r["throughput"], r["studio"], r["cold"], r["warm"]
    rows = [
        ("corpus", f"{r['corpus_mb']:,.0f} MB, {s['records']:,} records ({r['tokenizer']})"),
        ("studio: page 1 / line index", f"{s['first_page_s']:.3f} s / {s['index_s']:.1f} s ({s['lines']:,} lines)"),
        ("studio: validate", f"{s['validate_s']:.1f} s ({s['bad']} bad records)"),
        (f"cache build vs encode_batch (first {t['sample_mb']:.0f} MB, median of {t['repeats']}, interleaved)",
         f"**{t['ratio']:.2f}×** ({t['mb_s']['cache_build']:.2f} vs {t['mb_s']['encode_batch']:.2f} MB/s)"),
        (f"every core, {t['cores']} cores: one process, tokenizers' threads (encode_batch_fast)",
         f"{t['mb_s']['encode_batch_fast']:.2f} MB/s"),
        (f"every core, {t['cores']} cores: {t['cores']} single-threaded worker processes",
         f"{t['mb_s']['processes']:.2f} MB/s ({t['processes_vs_threads']:.2f}× the threads' speed)"),
        ("cache build, whole corpus (in the cold start)", f"{r['full_build']['seconds']:.0f} s, "
                                                           f"{r['full_build']['mb_s']:.2f} MB/s, "
                                                           f"{r['full_build']['tokens']:,} tokens"),
        ("Start → first step, cold cache", f"{c['first_step_s']:.1f} s ({c['prepare_events']} prepare events)"),
        ("Start → first step, warm cache", f"**{w['first_step_s']:.1f} s** ({w['prepare_events']} prepare events)"),
        ("trainer peak RSS (VmHWM), cold / warm", f"**{c['peak_rss_mb']:.0f} MB** / {w['peak_rss_mb']:.0f} MB"),
    ]
    return "| measure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--path", help="a pretrain JSONL to measure (default: generate one)")
    parser.add_argument("--size-mb", type=float, default=1024, help="size of the generated corpus (1024)")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: ../shared/data/minimind-tokenizers/v3)")
    parser.add_argument("--work", help="scratch folder (default: bench/_data_scale)")
    parser.add_argument("--sample-mb", type=float, default=8, help="MB measured for the throughput ratio (8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the full result here")
    args = parser.parse_args(argv)
    result = run(args.path, args.size_mb, args.tokenizer, args.work, args.sample_mb, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(table(result))
    return 0 if result["cold"]["exit"] == 0 and result["warm"]["exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
