"""Training throughput: our engine (packed windows) vs MiniMind's reference data path (pad every sample).

    python -m bench.train_throughput             # prints a table
    python -m bench.train_throughput --markdown  # the same as Markdown (docs/benchmarks.md)

Both sides train the `small` preset (MiniMind2-Small, 25.8M params) on CPU with the same batch size, sequence
length, optimizer and thread count, on ../shared/data/pretrain.jsonl (the first `records` documents):

- packed: `core.train.run_training` itself (PretrainDataset windows from the token cache, no padding);
  step time from the engine's `metric` event times, useful tokens/s from its `tokens_per_s`.
- naive: MiniMind v2's PretrainDataset way (dataset/lm_dataset.py @83e52f6): each sample is tokenized when it
  is fetched, `[bos] + ids[:L-2] + [eos]`, right-padded with 0 to L, pads labelled -100; same model, AdamW and
  clipping in a plain loop. Useful tokens are the non-pad ones.

The first step of each side is a warm-up and is not counted. Weights are random: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _slice(src: Path, dst: Path, n: int) -> Path:
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)
    return dst


def _naive(data: Path, tok, preset: str, batch_size: int, seq_len: int, steps: int, device: str = "cpu",
           precision: str = "fp32") -> dict:
    import contextlib

    import torch
    from torch.utils.data import DataLoader, Dataset

    from core.config import get_preset
    from core.model import MiniMindForCausalLM

    class PaddedPretrain(Dataset):  # MiniMind's way: tokenize on the fly, pad to max length
        def __init__(self, path):
            self.lines = Path(path).read_text(encoding="utf-8").splitlines()

        def __len__(self):
            return len(self.lines)

        def __getitem__(self, i):
            ids = [tok.bos_id] + tok.encode(json.loads(self.lines[i])["text"])[: seq_len - 2] + [tok.eos_id]
            ids = ids + [tok.pad_id] * (seq_len - len(ids))
            x = torch.tensor(ids)
            labels = x.clone()
            labels[x == tok.pad_id] = -100
            return x, labels

    torch.manual_seed(0)
    model = MiniMindForCausalLM(get_preset(preset, vocab_size=tok.vocab_size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    amp = (lambda: torch.autocast(device_type=torch.device(device).type, dtype=dtype)) if dtype else contextlib.nullcontext
    loader = iter(DataLoader(PaddedPretrain(data), batch_size=batch_size, shuffle=True,
                             generator=torch.Generator().manual_seed(0)))
    times, useful, total = [], 0, 0
    for i in range(steps + 1):
        t0 = time.perf_counter()
        x, y = (t.to(device) for t in next(loader))
        with amp():
            loss = model(x, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # step 0 is the warm-up
            times.append(time.perf_counter() - t0)
            useful += int((y != -100).sum())
            total += y.numel()
    step = statistics.mean(times)
    return {"step_s": step, "useful_tok_s": useful / sum(times), "padding": 1 - useful / total,
            "tokens_per_step": total // len(times)}


def _packed(data: Path, tok_dir: Path, work: Path, preset: str, batch_size: int, seq_len: int, steps: int,
            device: str = "cpu", precision: str = "fp32") -> dict:
    from core.config.train import load_train_config
    from core.train import run_training

    run_dir = work / "packed-run"
    base = {"method": "pretrain", "model": preset, "run_dir": str(run_dir), "max_steps": steps + 1,
            "batch_size": batch_size, "device": device, "precision": precision, "log_every": 1, "save_every": 0,
            "data": {"files": [str(data)], "seq_len": seq_len, "tokenizer": str(tok_dir),
                     "cache_dir": str(work / "cache")}}
    cfg = load_train_config(None, [], base=base)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the event stream; read back from events.jsonl below
        code = run_training(cfg)
    if code != 0:
        raise RuntimeError(f"the packed run failed; see {run_dir / 'events.jsonl'}")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["type"] == "run_started")
    metrics = [e for e in events if e["type"] == "metric"]
    times = [b["time"] - a["time"] for a, b in zip(metrics, metrics[1:])]  # warm-up step 1 excluded
    return {"step_s": statistics.mean(times),
            "useful_tok_s": statistics.mean(m["metrics"]["tokens_per_s"] for m in metrics[1:]),
            "padding": 0.0, "tokens_per_step": batch_size * seq_len,
            "setup_s": metrics[0]["time"] - started["time"], "total_s": time.perf_counter() - t0,
            "dataset_tokens": started["dataset_tokens"]}


def run(preset: str = "small", batch_size: int = 8, seq_len: int = 340, steps: int = 4, records: int = 20000,
        threads: int | None = None, data: Path | None = None, device: str = "cpu", precision: str = "fp32") -> dict:
    """{"preset", "batch_size", "seq_len", "steps", "threads", "rows": {"packed": {...}, "naive": {...}}, "ratio"}."""
    import torch

    from core.tokenizer import train_tokenizer

    if threads:
        torch.set_num_threads(threads)
    src = Path(data) if data else SHARED / "pretrain.jsonl"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: the shared pretrain data is needed for this benchmark")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sliced = _slice(src, work / "pretrain.jsonl", records)
        tok = train_tokenizer([sliced], vocab_size=6400, out_dir=work / "tokenizer", max_records=5000)
        rows = {"packed": _packed(sliced, work / "tokenizer", work, preset, batch_size, seq_len, steps, device, precision),
                "naive": _naive(sliced, tok, preset, batch_size, seq_len, steps, device, precision)}
    _add_mfu(rows, preset, device, precision)
    return {"device": device, "precision": precision, "preset": preset, "batch_size": batch_size, "seq_len": seq_len, "steps": steps, "records": records,
            "threads": torch.get_num_threads(), "rows": rows,
            "ratio": rows["packed"]["useful_tok_s"] / rows["naive"]["useful_tok_s"]}


def _add_mfu(rows: dict, preset: str, device: str, precision: str) -> None:
    """On a GPU, each row's MFU = 6·N·useful tok/s / the card's peak (bench.common)."""
    if not device.startswith("cuda"):
        return
    import torch

    from bench.common import gpu_peak_flops, mfu
    from core.config import get_preset
    from core.model import MiniMindForCausalLM

    with torch.device("meta"):
        params = MiniMindForCausalLM(get_preset(preset)).num_parameters()
    peak = gpu_peak_flops(torch.cuda.get_device_name(0), precision)
    for r in rows.values():
        r["mfu"] = mfu(params, r["useful_tok_s"], peak)
        r["gpu"] = torch.cuda.get_device_name(0)


def format_table(result: dict, markdown: bool = False) -> str:
    head = ["data path", "step time (s)", "useful tok/s", "padding", "tokens/step"]
    lines = []
    for name, r in result["rows"].items():
        label = "packed (our engine)" if name == "packed" else "pad to max length (MiniMind)"
        lines.append([label, f"{r['step_s']:.2f}", f"{r['useful_tok_s']:.0f}", f"{r['padding']:.1%}",
                      str(r["tokens_per_step"])])
    where = "CPU" if result.get("device", "cpu") == "cpu" else f"{result['device']} {result.get('precision')}"
    title = (f"{result['preset']} preset, {where}, {result['threads']} threads, batch {result['batch_size']} x "
             f"{result['seq_len']} tokens, {result['steps']} timed steps; useful-token ratio {result['ratio']:.2f}x")
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in lines]
        return title + "\n\n" + "\n".join(out)
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([title, fmt.format(*head)] + [fmt.format(*row) for row in lines])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=340, help="MiniMind v2's default max_seq_len")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU figures: --device cuda --precision bf16)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--markdown", action="store_true")
    a = p.parse_args(argv)
    result = run(a.preset, a.batch_size, a.seq_len, a.steps, a.records, a.threads, device=a.device,
                 precision=a.precision)
    print(format_table(result, a.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
