"""SQLite event ingestion: events/s through the studio's `RunStore.add_events` on a real WAL database file.

    python -m bench.ingest_rate                # 20,000 metric events, prints a table
    python -m bench.ingest_rate --events 100000

The run manager stores what one poll of events.jsonl brought (every 250 ms) in one transaction; `batched`
measures that (`batch` events per call), `one per transaction` calls add_events per event, the naive way. The
events are schema-v1 `metric` events with the trainer's usual six metrics, plus a `checkpoint` every 500 steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def _events(n: int, start: int = 1) -> list[dict]:
    t = time.time()
    out = []
    for step in range(start, start + n):
        if step % 500 == 0:
            out.append({"v": 1, "type": "checkpoint", "time": t, "step": step, "path": f"checkpoints/step-{step:06d}"})
        else:
            out.append({"v": 1, "type": "metric", "time": t + step * 1e-3, "step": step, "epoch": 0,
                        "metrics": {"loss": 3.0 / step ** 0.1, "lr": 5e-4, "grad_norm": 1.0, "tokens_per_s": 5e3,
                                    "aux_loss": 0.0, "epoch_frac": step / n}})
    return out


def _rate(store, run_id: str, events: list[dict], batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(events), batch):
        store.add_events(run_id, events[i:i + batch], offset=i)
    return len(events) / (time.perf_counter() - t0)


def run(events: int = 20000, batch: int = 200, single: int = 1000) -> dict:
    """{"batched_events_s", "single_events_s", "ratio", ...}; `single` events go one transaction each."""
    from studio.store import RunStore

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        store = RunStore(Path(tmp) / "studio.db")
        try:
            store.create_run("bench", run_dir=Path(tmp) / "runs" / "bench", status="running")
            batched = _rate(store, "bench", _events(events), batch)
            store.create_run("single", run_dir=Path(tmp) / "runs" / "single", status="running")
            one = _rate(store, "single", _events(single), 1)
            stored = len(store.metric_series("bench", "loss")[0])
            journal = store.journal_mode()
        finally:
            store.close()
    return {"events": events, "batch": batch, "single_events": single, "journal_mode": journal,
            "batched_events_s": round(batched), "single_events_s": round(one), "ratio": batched / one,
            "loss_points_stored": stored}


def print_table(r: dict) -> None:
    print(f"RunStore.add_events on SQLite ({r['journal_mode']}), {r['events']} metric events")
    print(f"  batched ({r['batch']} per transaction): {r['batched_events_s']:>9,} events/s")
    print(f"  one per transaction:          {r['single_events_s']:>9,} events/s")
    print(f"  ratio: {r['ratio']:.1f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest_rate", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20000)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    r = run(a.events, a.batch)
    print(json.dumps(r)) if a.json else print_table(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
