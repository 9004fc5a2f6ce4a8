"""Training throughput: our engine (packed windows) vs MiniMind's reference data path (pad every sample).

    python -m bench.train_throughput             # prints a table
    python -m bench.train_throughput --markdown  # the same as Markdown (docs/benchmarks.md)

Both sides train the `small` preset (MiniMind2-Small, 25.8M params) on CPU with the same batch size, sequence
length, optimizer and thread count, on ../shared/data/pretrain.jsonl (the first `records` documents):

- packed: `core.train.run_training` itself (PretrainDataset windows from the token cache, no padding);
- naive: MiniMind v2's PretrainDataset way (dataset/lm_dataset.py @83e52f6): each sample is tokenized when it
  is fetched, `[bos] + ids[:L-2] + [eos]`, right-padded with 0 to L, pads labelled -100; same model, AdamW and
  clipping in a plain loop. Its batches are drawn (tokenized) before the clock starts, as MiniMind's DataLoader
  workers prepare them alongside the accelerator; fp16 runs with a GradScaler, as in MiniMind.

Each precision's row also gives text characters/s (useful tokens/s × the slice's characters per token: fair across
tokenizers) and MFU against the model-shaped matmul peak measured on this machine in that precision (bench/mfu.py).

Both sides are measured the same way: the time from the end of the warm-up step to the end of the last step
(packed: the engine's `metric` event times, one per step; naive: perf_counter after each step), and the tokens
processed in between, total over total. Useful tokens are the non-padding ones: all of them when packed; for
the naive side, the processed tokens times (1 - the padding share of the whole document slice), counted exactly
from every document's length (min(len + 2, L) of L per row), not from the few documents the timed steps drew.
The sides run interleaved, `repeats` times (packed/naive, then naive/packed, ...), so both see the same machine
load; the report gives min/median/max of each side and of the per-repeat ratio. Weights are random: speed does
not depend on them.
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


def _padded_dataset(path: Path, tok, seq_len: int):
    """MiniMind's way: tokenize each sample when it is fetched, pad it to max length, pads labelled -100."""
    import torch
    from torch.utils.data import Dataset

    class PaddedPretrain(Dataset):
        def __init__(self):
            self.lines = Path(path).read_text(encoding="utf-8").splitlines()

        def __len__(self):
            return len(self.lines)

        def __getitem__(self, i):
            ids = [tok.bos_id] + tok.encode(json.loads(self.lines[i])["text"])[: seq_len - 2] + [tok.eos_id]
            x = torch.tensor(ids + [tok.pad_id] * (seq_len - len(ids)))
            labels = x.clone()
            labels[x == tok.pad_id] = -100
            return x, labels

    return PaddedPretrain()


def _naive(data: Path, tok, preset: str, batch_size: int, seq_len: int, steps: int, device: str = "cpu",
           precision: str = "fp32") -> dict:
    import torch
    from torch.utils.data import DataLoader

    from core.config import get_preset
    from core.model import MiniMindForCausalLM

    torch.manual_seed(0)
    model = MiniMindForCausalLM(get_preset(preset, vocab_size=tok.vocab_size)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    amp = (lambda: torch.autocast(device_type=torch.device(device).type, dtype=dtype)) if dtype else contextlib.nullcontext
    loader = iter(DataLoader(_padded_dataset(data, tok, seq_len), batch_size=batch_size, shuffle=True,
                             generator=torch.Generator().manual_seed(0)))
    # tokenized before the clock starts, as MiniMind's DataLoader workers do alongside the GPU
    batches = [next(loader) for _ in range(steps + 1)]
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")  # fp16 needs scaling
    ends, useful = [], 0
    for i, (x, y) in enumerate(batches):  # step 0 is the warm-up
        x, y = x.to(device), y.to(device)
        with amp():
            loss = model(x, labels=y).loss
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
        useful += int((y != -100).sum()) if i else 0
    tokens = steps * batch_size * seq_len
    return {"seconds": ends[-1] - ends[0], "tokens": tokens, "batch_padding": 1 - useful / tokens}


def _packed(data: Path, tok_dir: Path, work: Path, preset: str, batch_size: int, seq_len: int, steps: int,
            device: str = "cpu", precision: str = "fp32", run_name: str = "packed-run") -> dict:
    from core.config.load import load_train_config
    from core.train import run_training

    run_dir = work / run_name
    base = {"method": "pretrain", "model": preset, "run_dir": str(run_dir), "max_steps": steps + 1,
            "batch_size": batch_size, "device": device, "precision": precision, "log_every": 1, "save_every": 0,
            "data": {"files": [str(data)], "seq_len": seq_len, "tokenizer": str(tok_dir),
                     "cache_dir": str(work / "cache")}}
    cfg = load_train_config(None, [], base=base)
    with contextlib.redirect_stdout(io.StringIO()):  # the event stream; read back from events.jsonl below
        code = run_training(cfg)
    if code != 0:
        raise RuntimeError(f"the packed run failed; see {run_dir / 'events.jsonl'}")
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    started = next(e for e in events if e["type"] == "run_started")
    metrics = [e for e in events if e["type"] == "metric"]  # one per step (log_every 1); the first ends the warm-up
    return {"seconds": metrics[-1]["time"] - metrics[0]["time"], "tokens": (len(metrics) - 1) * batch_size * seq_len,
            "setup_s": metrics[0]["time"] - started["time"], "dataset_tokens": started["dataset_tokens"]}


def _slice_padding(data: Path, tok, seq_len: int, cache_dir: Path) -> dict:
    """The naive side's padding share over every document of the slice: row i holds min(len_i + 2, L) of L
    tokens (`[bos] + ids + [eos]`, truncated). Document lengths come from the packed side's token cache."""
    import numpy as np

    from core.data import PretrainDataset

    lengths = np.diff(PretrainDataset([data], tok, seq_len, cache_dir).doc_offsets)  # len_i + 2 each
    kept = np.minimum(lengths, seq_len)
    with open(data, encoding="utf-8") as f:
        chars = sum(len(json.loads(line)["text"]) for line in f if line.strip())
    return {"documents": int(len(lengths)), "padding": float(1 - kept.sum() / (len(lengths) * seq_len)),
            "median_doc_tokens": float(np.median(lengths - 2)), "chars_per_token": chars / float(lengths.sum())}


def _spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _summarise(reps: list[dict], padding: float, batch_size: int, seq_len: int) -> dict:
    """Per side: useful tok/s and step time over the repeats; per repeat: packed / naive useful tok/s."""
    keep = {"packed": 1.0, "naive": 1.0 - padding}
    rows = {}
    for side, share in keep.items():
        rates = [r[side]["tokens"] * share / r[side]["seconds"] for r in reps]
        steps = [r[side]["seconds"] * batch_size * seq_len / r[side]["tokens"] for r in reps]
        rows[side] = {"useful_tok_s": _spread(rates), "step_s": _spread(steps),
                      "padding": 1.0 - share, "tokens_per_step": batch_size * seq_len}
    rows["naive"]["timed_batch_padding"] = _spread([r["naive"]["batch_padding"] for r in reps])
    ratios = [(r["packed"]["tokens"] / r["packed"]["seconds"]) / (r["naive"]["tokens"] * keep["naive"]
                                                                  / r["naive"]["seconds"]) for r in reps]
    return {"rows": rows, "ratios": ratios, "ratio": _spread(ratios)}


def _measure(sliced: Path, work: Path, tok, preset: str, batch_size: int, seq_len: int, steps: int, repeats: int,
             device: str, precision: str) -> list[dict]:
    """`repeats` rounds of both sides, interleaved; the side that goes first alternates (ABBA)."""
    reps = []
    for i in range(repeats):
        rep = {}
        for side in (("packed", "naive") if i % 2 == 0 else ("naive", "packed")):
            rep[side] = (_packed(sliced, work / "tokenizer", work, preset, batch_size, seq_len, steps, device,
                                 precision, run_name=f"packed-run-{i}") if side == "packed" else
                         _naive(sliced, tok, preset, batch_size, seq_len, steps, device, precision))
        reps.append(rep)
    return reps


def run(preset: str = "small", batch_size: int = 8, seq_len: int = 340, steps: int = 4, records: int = 20000,
        threads: int | None = None, data: Path | None = None, device: str = "cpu", precision: str = "fp32",
        repeats: int = 5) -> dict:
    """{"preset", ..., "rows": {"packed": {...}, "naive": {...}}, "ratio": {min, median, max}, "repeats": [...]}."""
    import torch

    from core.tokenizer import train_tokenizer

    if threads:
        torch.set_num_threads(threads)
    src = Path(data) if data else SHARED / "pretrain.jsonl"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: the shared pretrain data is needed for this benchmark")
    from bench.mfu import model_peak
    from core.config import get_preset

    model_cfg = get_preset(preset, vocab_size=6400)
    peaks = [model_peak(model_cfg, batch_size, seq_len, device, precision)]  # before and after: the higher counts
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sliced = _slice(src, work / "pretrain.jsonl", records)
        tok = train_tokenizer([sliced], vocab_size=6400, out_dir=work / "tokenizer", max_records=5000)
        reps = _measure(sliced, work, tok, preset, batch_size, seq_len, steps, repeats, device, precision)
        data_slice = _slice_padding(sliced, tok, seq_len, work / "cache")
    peaks.append(model_peak(model_cfg, batch_size, seq_len, device, precision))
    result = {"device": device, "precision": precision, "preset": preset, "batch_size": batch_size,
              "seq_len": seq_len, "steps": steps, "records": records, "repeats": reps, "slice": data_slice,
              "threads": torch.get_num_threads(), "peak_flops": max(peaks),
              **_summarise(reps, data_slice["padding"], batch_size, seq_len)}
    _add_mfu(result, get_preset(preset, vocab_size=tok.vocab_size))
    return result


def _add_mfu(result: dict, model_cfg) -> None:
    """Each row's text characters/s and MFU (bench/mfu.py: 6·N_active + causal attention FLOPs per token, over
    the model-shaped matmul peak measured in this precision); on a known GPU also MFU against its data sheet."""
    from bench.common import gpu_peak_flops
    from bench.mfu import mfu, train_flops_per_token

    flops = train_flops_per_token(model_cfg, result["seq_len"])
    sheet = None
    if result["device"].startswith("cuda"):
        import torch

        result["gpu"] = torch.cuda.get_device_name(0)
        sheet = gpu_peak_flops(result["gpu"], result["precision"])
    result["flops_per_token"] = flops
    for r in result["rows"].values():
        tok_s = r["useful_tok_s"]["median"]
        r["chars_s"] = tok_s * result["slice"]["chars_per_token"]
        r["mfu"] = mfu(flops, tok_s, result["peak_flops"])
        r["mfu_datasheet"] = mfu(flops, tok_s, sheet)


def _mmm(spread: dict, fmt: str) -> str:
    return " / ".join(format(spread[k], fmt) for k in ("min", "median", "max"))


def format_table(result: dict, markdown: bool = False) -> str:
    head = ["data path", "step time (s), min / median / max", "useful tok/s, min / median / max", "text chars/s",
            "MFU", "padding", "tokens/step"]
    lines = []
    for name, r in result["rows"].items():
        label = "packed (our engine)" if name == "packed" else "pad to max length (MiniMind)"
        lines.append([label, _mmm(r["step_s"], ".2f"), _mmm(r["useful_tok_s"], ".0f"), f"{r['chars_s']:.0f}",
                      f"{r['mfu']:.0%}", f"{r['padding']:.1%}", str(r["tokens_per_step"])])
    where = f"{result.get('gpu') or result.get('device', 'cpu')} {result.get('precision')}"
    title = (f"{result['preset']} preset, {where}, {result['threads']} threads, batch {result['batch_size']} x "
             f"{result['seq_len']} tokens, {result['steps']} timed steps x {len(result['repeats'])} interleaved "
             f"repeats; padding over all {result['slice']['documents']:,} documents "
             f"{result['slice']['padding']:.1%}; useful-token ratio per repeat (min / median / max) "
             f"{_mmm(result['ratio'], '.2f')}x; MFU = {result['flops_per_token'] / 1e6:.0f} MFLOP/token × median "
             f"useful tok/s / the {result['precision']} matmul peak measured here, "
             f"{result['peak_flops'] / 1e9:,.0f} GFLOP/s")
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
    p.add_argument("--batch-size", type=int, help="default 8 on CPU, 64 on CUDA (a step long enough to time)")
    p.add_argument("--seq-len", type=int, default=340, help="MiniMind v2's default max_seq_len")
    p.add_argument("--steps", type=int, help="timed steps per side and repeat (plus one warm-up); 4 CPU, 20 CUDA")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds of both sides")
    p.add_argument("--records", type=int, default=20000)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu", help="cpu or cuda (GPU figures: --device cuda --precision bf16)")
    p.add_argument("--precision", default="fp32", help="fp32, bf16, fp16, or several: fp32,bf16")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    a = p.parse_args(argv)
    gpu = a.device.startswith("cuda")
    for precision in a.precision.split(","):
        result = run(a.preset, a.batch_size or (64 if gpu else 8), a.seq_len, a.steps or (20 if gpu else 4),
                     a.records, a.threads, device=a.device, precision=precision, repeats=a.repeats)
        print(json.dumps(result, indent=1) if a.json else format_table(result, a.markdown) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
