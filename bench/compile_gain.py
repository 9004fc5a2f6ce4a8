"""torch.compile: what compiling costs against what it saves per training step, per preset.

    python -m bench.compile_gain                       # tiny, small, base on CPU in the auto precision
    python -m bench.compile_gain --presets tiny --markdown
    python -m bench.compile_gain --presets small --attention both --threads 1   # compiled SDPA vs matmul attention

For each preset, one model is trained eagerly and a copy of it (same weights) through `torch.compile` (inductor),
on the same random batches, with the run's `auto` precision (bf16 autocast on CPUs with native bf16) and AdamW.
compile time = the compiled copy's first step (tracing + code generation for forward and backward) minus the
median eager step. Then the two take steps in turn (eager/compiled, then compiled/eager, ...), so both see the
same machine load on a shared machine; the per-pair ratio eager/compiled is the gain, and
break-even steps = compile time / (eager step - compiled step): the run length after which compiling has paid.
The compiled copy computes attention with SDPA, as the engine does (``--attention sdpa``), or as matmuls + softmax
(``explicit``, the model's reference path); ``--attention both`` compiles one copy of each and takes steps with
all three in turn (rotating order), to compare the two compiled forms under the same load.
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


def measure(preset: str, batch_size: int, seq_len: int, pairs: int, device: str = "cpu",
            attention: str = "sdpa") -> dict:
    """{"preset", "compile_s", "eager_step_s", "compiled_step_s", "gain" (min/median/max), "break_even_steps"}; with
    ``attention="both"`` also "compiled_sdpa" and "compiled_explicit", each with its own compile time, step and
    gain, and "explicit_over_sdpa" (per-round ratio of the two compiled steps)."""
    import torch

    from core.config import get_preset
    from core.model import MiniMindForCausalLM
    from core.precision import NAMES, autocast, resolve_precision

    dev = torch.device(device)
    dtype, _ = resolve_precision("auto", dev)
    torch.manual_seed(0)
    eager = MiniMindForCausalLM(get_preset(preset, vocab_size=6400)).to(dev)
    kinds = ["sdpa", "explicit"] if attention == "both" else [attention]
    twins = {}
    for kind in kinds:
        twin = copy.deepcopy(eager)
        for module in twin.modules():
            if hasattr(module, "use_sdpa"):
                module.use_sdpa = kind == "sdpa"
        twins[kind] = (twin, torch.compile(twin))
    opts = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-4) for m in [eager] + [t for t, _ in twins.values()]}
    x = torch.randint(0, 6400, (batch_size, seq_len), device=dev)
    amp = (lambda: autocast(dev, dtype))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(model, opt_of) -> float:
        t0 = time.perf_counter()
        _step(model, opts[id(opt_of)], x, amp)
        sync()
        return time.perf_counter() - t0

    warm = [timed(eager, eager) for _ in range(2)]
    firsts = {}
    for kind, (twin, compiled) in twins.items():
        firsts[kind] = timed(compiled, twin)
        timed(compiled, twin)  # a second compiled step: any recompilation (grad mode, optimizer state) lands here
    runners = [("eager", eager, eager)] + [(kind, compiled, twin) for kind, (twin, compiled) in twins.items()]
    times: dict[str, list[float]] = {name: [] for name, _m, _o in runners}
    for i in range(pairs):
        shift = i % len(runners)  # each variant takes each position in turn
        for name, model, owner in runners[shift:] + runners[:shift]:
            times[name].append(timed(model, owner))
    e_med = statistics.median(times["eager"])

    def summary(kind: str) -> dict:
        c_med = statistics.median(times[kind])
        gains = [e / c for e, c in zip(times["eager"], times[kind])]
        compile_s = max(firsts[kind] - e_med, 0.0)
        saved = e_med - c_med
        return {"compile_s": compile_s, "compiled_step_s": c_med,
                "gain": {"min": min(gains), "median": statistics.median(gains), "max": max(gains)},
                "break_even_steps": compile_s / saved if saved > 0 else None}

    main_kind = "sdpa" if "sdpa" in kinds else kinds[0]  # the top-level figures: what the engine compiles
    out = {"preset": preset, "precision": NAMES[dtype], "batch_size": batch_size, "seq_len": seq_len,
           "pairs": pairs, "threads": torch.get_num_threads(), "attention": attention, "warm_eager_s": warm,
           "eager_step_s": e_med, **summary(main_kind)}
    if attention == "both":
        out["compiled_sdpa"], out["compiled_explicit"] = summary("sdpa"), summary("explicit")
        ratios = [s / e for s, e in zip(times["sdpa"], times["explicit"])]
        out["explicit_over_sdpa"] = {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}
    return out


def table(rows: list[dict], markdown: bool = False) -> str:
    head = ["preset", "precision", "compile (s)", "eager step (s)", "compiled step (s)",
            "gain eager/compiled, min / median / max", "break-even steps"]
    body = []
    for r in rows:
        variants = ([(f"{r['preset']} (SDPA)", r["compiled_sdpa"]), (f"{r['preset']} (matmul attention)",
                                                                    r["compiled_explicit"])]
                    if r.get("attention") == "both" else [(r["preset"], r)])
        for label, v in variants:
            body.append([label, r["precision"], f"{v['compile_s']:.0f}", f"{r['eager_step_s']:.3f}",
                         f"{v['compiled_step_s']:.3f}",
                         " / ".join(f"{v['gain'][k]:.2f}" for k in ("min", "median", "max")),
                         f"{v['break_even_steps']:.0f}" if v["break_even_steps"] else "never"])
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
    p.add_argument("--attention", default="sdpa", choices=["sdpa", "explicit", "both"],
                   help="attention of the compiled copy (sdpa: as the engine compiles)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    rows = []
    for name in a.presets.split(","):
        rows.append(dict(measure(name, a.batch_size, a.seq_len, a.pairs, a.device, a.attention), device=a.device))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # each preset as it finishes
    print(json.dumps(rows, indent=1) if a.json else table(rows, a.markdown))
    for r in rows:
        if "explicit_over_sdpa" in r:
            ratio = r["explicit_over_sdpa"]
            print(f"{r['preset']}: compiled SDPA step / compiled matmul-attention step, per round: "
                  f"{ratio['min']:.2f} / {ratio['median']:.2f} / {ratio['max']:.2f} (min / median / max)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
