"""GGUF export speed, size and quality per type: `python -m core.export.bench [CHECKPOINT]` prints a table.

Without a checkpoint the model is the `small` preset, random init. `bench_export()` is what `python -m bench`
calls. Writing and checking are timed apart: the write is the export proper (for K-quants: the f32 file, then
llama.cpp's quantizer), the check loads the file in llama.cpp, runs 32 greedy steps and, for every type but f32,
measures it against the f32 export on held-out text (core/export/quality.py).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

TEXT = ("MiniMind is a small language model. 小模型也能学会说话。 Emoji 🙂 and code: print('hi')\n" * 40)


def _bench_tokenizer(work: Path):
    """A small byte-level BPE trained on a built-in text (the bench must not need the shared datasets)."""
    from core.tokenizer import train_tokenizer

    src = work / "corpus.txt"
    src.write_text(TEXT, encoding="utf-8")
    return train_tokenizer([src], vocab_size=512, out_dir=work / "tokenizer")


def bench_export(preset: str = "small", qtypes=("f32", "f16", "q8_0"), check: bool = True,
                 checkpoint: str | None = None) -> dict:
    """{qtype: {"write_s", "parity_s", "file_mib", "rel_logit_diff", "top1_agreement", "quality", "fallbacks"}}
    for a random-init preset, or for `checkpoint` (a run or checkpoint folder) when given."""
    import torch

    from core.config import get_preset
    from core.export.gguf import export_gguf
    from core.model import MiniMindForCausalLM

    results: dict = {"preset": checkpoint or preset}
    with tempfile.TemporaryDirectory(prefix="minimind-bench-export-") as tmp:
        work = Path(tmp)
        if checkpoint:
            from core.model.io import load_model

            model, tok = load_model(checkpoint)
        else:
            tok = _bench_tokenizer(work)
            torch.manual_seed(0)
            model = MiniMindForCausalLM(get_preset(preset)).eval()  # vocab 6400: rows past the tokenizer are padding
        results["params"] = model.num_parameters()
        for qtype in qtypes:
            out = work / f"{preset}-{qtype}.gguf"
            t0 = time.perf_counter()
            report = export_gguf(model, out, qtype, tokenizer=tok, check=check, modelfile=False)
            total_s = time.perf_counter() - t0
            row = {"write_s": round(report["seconds"], 2), "file_mib": round(out.stat().st_size / 2**20, 2),
                   "fallbacks": len(report["fallbacks"]), "type_counts": report["type_counts"]}
            if check:
                p = report["parity"]
                row.update(parity_s=round(total_s - report["seconds"], 2), rel_logit_diff=p["rel_logit_diff"],
                           top1_agreement=p["top1_agreement"], quality=p.get("quality"))
            results[qtype] = row
    return results


def print_table(results: dict) -> None:
    print(f"GGUF export, {results['preset']} ({results['params']:,} params)")
    print(f"{'type':<7} {'write s':>8} {'MiB':>7} {'parity s':>9} {'rel Δlogit':>11} {'top-1':>6} "
          f"{'ppl vs f32':>11} {'top-1 vs f32':>13} {'mean KL':>9} {'fallbacks':>10}")
    nan = float("nan")
    for qtype, row in results.items():
        if isinstance(row, dict):
            q = row.get("quality") or {}
            print(f"{qtype:<7} {row['write_s']:>8.2f} {row['file_mib']:>7.2f} {row.get('parity_s', nan):>9.2f} "
                  f"{row.get('rel_logit_diff', nan):>11.2e} {row.get('top1_agreement', nan):>6.0%} "
                  f"{q.get('perplexity_change', nan):>+11.2%} {q.get('top1_agreement', nan):>13.1%} "
                  f"{q.get('mean_kl', nan):>9.2e} {row['fallbacks']:>10}")


if __name__ == "__main__":
    import sys

    from core.export.types import GGUF_TYPES

    print_table(bench_export(qtypes=tuple(GGUF_TYPES), checkpoint=sys.argv[1] if len(sys.argv) > 1 else None))
