"""GGUF export speed for the `small` preset (random init): `python -m core.export.bench` prints a table.

`bench_export()` is what `python -m bench` calls. Writing and checking are timed apart: the write is the
export proper, the parity check loads the file in llama.cpp and runs 32 greedy steps.
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


def bench_export(preset: str = "small", qtypes=("f32", "f16", "q8_0"), check: bool = True) -> dict:
    """{qtype: {"write_s", "parity_s", "file_mib", "rel_logit_diff", "top1_agreement"}} for a random-init preset."""
    import torch

    from core.config import get_preset
    from core.export.gguf import export_gguf
    from core.model import MiniMindForCausalLM

    results: dict = {"preset": preset}
    with tempfile.TemporaryDirectory(prefix="minimind-bench-export-") as tmp:
        work = Path(tmp)
        tok = _bench_tokenizer(work)
        torch.manual_seed(0)
        model = MiniMindForCausalLM(get_preset(preset)).eval()  # vocab 6400: rows past the tokenizer are padding
        results["params"] = model.num_parameters()
        for qtype in qtypes:
            out = work / f"{preset}-{qtype}.gguf"
            t0 = time.perf_counter()
            export_gguf(model, out, qtype, tokenizer=tok, check=False, modelfile=False)
            write_s = time.perf_counter() - t0
            row = {"write_s": round(write_s, 2), "file_mib": round(out.stat().st_size / 2**20, 1)}
            if check:
                from core.export.parity import check_parity

                t0 = time.perf_counter()
                p = check_parity(model, tok, out, qtype)
                row.update(parity_s=round(time.perf_counter() - t0, 2), rel_logit_diff=p["rel_logit_diff"],
                           top1_agreement=p["top1_agreement"])
            results[qtype] = row
    return results


def print_table(results: dict) -> None:
    print(f"GGUF export, preset {results['preset']} ({results['params']:,} params, random init)")
    print(f"{'type':<6} {'write s':>8} {'MiB':>7} {'parity s':>9} {'rel Δlogit':>11} {'top-1 agree':>12}")
    for qtype, row in results.items():
        if isinstance(row, dict):
            nan = float("nan")
            print(f"{qtype:<6} {row['write_s']:>8.2f} {row['file_mib']:>7.1f} {row.get('parity_s', nan):>9.2f} "
                  f"{row.get('rel_logit_diff', nan):>11.2e} {row.get('top1_agreement', nan):>12.0%}")


if __name__ == "__main__":
    print_table(bench_export())
