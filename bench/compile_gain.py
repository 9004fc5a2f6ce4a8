"""torch.compile: what compiling costs against what it saves per training step, per preset.

    python -m bench.compile_gain                       # tiny, small, base on CPU in the auto precision
    python -m bench.compile_gain --presets tiny --markdown

For each preset, one model is trained eagerly and a copy of it (same weights) through `torch.compile` (inductor),
on the same random batches, with the run's `auto` precision (bf16 autocast on CPUs with native bf16) and AdamW.
compile time = the compiled copy's first step (tracing + code generation for forward and backward) minus the
median eager step. Then the two take steps in turn (eager/compiled, then compiled/eager, ...), so both see the
same machine load on a shared machine; the per-pair ratio eager/compiled is the gain, and
break-even steps = compile time / (eager step - compiled step): the run length after which compiling has paid.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time


def _step(model, opt, x, amp) -> None:
    with amp():
        loss = model(x, labels=x).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure(preset: str, batch_size: int, seq_len: int, pairs: int, device: str = "cpu") -> dict:
    """{"preset", "compile_s", "eager_step_s", "compiled_step_s", "gain" (min/median/max), "break_even_steps"}."""
    import torch

    from core.config import get_preset
    from core.model import MiniMindForCausalLM
    from core.train.precision import NAMES, autocast, resolve_precision

    dev = torch.device(device)
    dtype, _ = resolve_precision("auto", dev)
    torch.manual_seed(0)
    eager = MiniMindForCausalLM(get_preset(preset, vocab_size=6400)).to(dev)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin)
    opts = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-4) for m in (eager, twin)}
    x = torch.randint(0, 6400, (batch_size, seq_len), device=dev)
    amp = (lambda: autocast(dev, dtype))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(model, opt_of) -> float:
        t0 = time.perf_counter()
        _step(model, opts[id(opt_of)], x, amp)
        sync()
        return time.perf_counter() - t0

    warm = [timed(eager, eager) for _ in range(2)]
    first = timed(compiled, twin)
    timed(compiled, twin)  # a second compiled step: any recompilation (grad mode, optimizer state) lands here
    eager_s, comp_s = [], []
    for i in range(pairs):
        order = ((eager, eager), (compiled, twin)) if i % 2 == 0 else ((compiled, twin), (eager, eager))
        for model, owner in order:
            (eager_s if owner is eager else comp_s).append(timed(model, owner))
    e_med, c_med = statistics.median(eager_s), statistics.median(comp_s)
    gains = [e / c for e, c in zip(eager_s, comp_s)]
    compile_s = max(first - e_med, 0.0)
    saved = e_med - c_med
    return {"preset": preset, "precision": NAMES[dtype], "batch_size": batch_size, "seq_len": seq_len,
            "pairs": pairs, "threads": torch.get_num_threads(), "compile_s": compile_s, "warm_eager_s": warm,
            "eager_step_s": e_med, "compiled_step_s": c_med,
            "gain": {"min": min(gains), "median": statistics.median(gains), "max": max(gains)},
            "break_even_steps": compile_s / saved if saved > 0 else None}


def table(rows: list[dict], markdown: bool = False) -> str:
    head = ["preset", "precision", "compile (s)", "eager step (s)", "compiled step (s)",
            "gain eager/compiled, min / median / max", "break-even steps"]
    body = [[r["preset"], r["precision"], f"{r['compile_s']:.0f}", f"{r['eager_step_s']:.3f}",
             f"{r['compiled_step_s']:.3f}", " / ".join(f"{r['gain'][k]:.2f}" for k in ("min", "median", "max")),
             f"{r['break_even_steps']:.0f}" if r["break_even_steps"] else "never"] for r in rows]
    r0 = rows[0]
    title = (f"torch.compile on {r0.get('device', 'cpu')}, batch {r0['batch_size']} x {r0['seq_len']} tokens, "
             f"{r0['threads']} threads, {r0['pairs']} interleaved step pairs")
    if markdown:
        return "\n".join([title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    return "\n".join([title] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in [head] + body])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", default="tiny,small,base")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--pairs", type=int, default=6, help="interleaved eager/compiled step pairs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    rows = []
    for name in a.presets.split(","):
        rows.append(dict(measure(name, a.batch_size, a.seq_len, a.pairs, a.device), device=a.device))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # each preset as it finishes
    print(json.dumps(rows, indent=1) if a.json else table(rows, a.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
