"""Screenshots of every studio pane: docs/screenshots/<pane>.png.

    python scripts/screenshots.py [--out docs/screenshots] [--workspace DIR]

Renders offscreen (a widget's own grab(), no display needed). Without --workspace it builds a throwaway demo
workspace: three finished runs (pretrain → SFT lineage, a GRPO run with rollouts) written as events.jsonl
folders and imported the way File > Import run folder does, so the panes show real store content.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _write_run(runs_dir: Path, name: str, method: str, steps: int, status: str, t0: float, seed: int,
               rl: bool = False) -> Path:
    run_dir = runs_dir / name
    (run_dir / "checkpoints").mkdir(parents=True)
    config = {"method": method, "model": "tiny", "max_steps": steps, "run_dir": str(run_dir)}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    lines = [{"v": 1, "type": "run_started", "time": t0, "step": 0, "run_id": name, "method": method,
              "config": config, "world_size": 1, "device": "cpu", "params": 1_600_000, "dataset_tokens": 2_000_000,
              "total_steps": steps, "resumed_from": None, "pid": 0}]
    for step in range(1, steps + 1):
        noise = 0.08 * math.sin(step * 0.37 + seed) + 0.05 * math.sin(step * 1.7 + seed)
        metrics = {"loss": 6.5 * math.exp(-step / (steps / 4)) + 1.8 + noise,
                   "lr": 5e-4 * min(1.0, step / 50) * (0.55 + 0.45 * math.cos(math.pi * step / steps)),
                   "grad_norm": 1.5 * math.exp(-step / steps) + 0.2 + abs(noise), "tokens_per_s": 5200 + 300 * noise}
        if rl:
            metrics.update({"reward/mean": 1 - math.exp(-step / (steps / 3)) + noise, "kl": 0.02 * step / steps})
        lines.append({"v": 1, "type": "metric", "time": t0 + step * 0.5, "step": step, "epoch": 0, "metrics": metrics})
        if step % (steps // 4) == 0:
            ckpt = f"checkpoints/step-{step:06d}"
            (run_dir / ckpt).mkdir()
            lines.append({"v": 1, "type": "checkpoint", "time": t0 + step * 0.5, "step": step, "path": ckpt})
            lines.append({"v": 1, "type": "eval", "time": t0 + step * 0.5, "step": step,
                          "metrics": {"eval/loss": metrics["loss"] + 0.15}})
        if rl and step % 25 == 0:
            lines.append({"v": 1, "type": "sample", "time": t0 + step * 0.5, "step": step, "samples": [
                {"prompt": "Who wrote the poem 静夜思?", "completion": "李白 (Li Bai)", "reward": 1.0,
                 "rewards": {"accuracy": 1.0, "format": 0.0}},
                {"prompt": "How many letters are in the word 'lantern'?", "completion": "Seven.",
                 "reward": 0.5 if step < 100 else 1.0, "rewards": {"accuracy": 0.5, "format": 0.0}}]})
    lines.append({"v": 1, "type": "run_finished", "time": t0 + steps * 0.5 + 1, "step": steps, "status": status,
                  "message": "stopped by the user" if status == "stopped" else ""})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return run_dir


def build_demo_workspace(root: Path) -> None:
    from studio.store import import_run_dir, open_store
    from studio.workspace import Workspace

    ws = Workspace(root).ensure()
    store = open_store(ws.db_path, ws.runs_dir)
    t0 = time.time() - 7200
    base = import_run_dir(store, _write_run(ws.runs_dir, "pretrain-tiny", "pretrain", 400, "completed", t0, 1))
    sft = import_run_dir(store, _write_run(ws.runs_dir, "sft-tiny", "sft", 240, "completed", t0 + 1800, 2))
    store.update_run(sft, parent_run_id=base, init_checkpoint=str(ws.runs_dir / base / "checkpoints/step-000400"))
    grpo = import_run_dir(store, _write_run(ws.runs_dir, "grpo-tiny", "grpo", 200, "stopped", t0 + 3600, 3, rl=True))
    store.update_run(grpo, parent_run_id=sft, init_checkpoint=str(ws.runs_dir / sft / "checkpoints/step-000240"))
    store.close()


def take(out: Path, workspace: Path) -> list[Path]:
    from PySide6.QtWidgets import QApplication

    from studio.app import build_context
    from studio.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    context = build_context(workspace)
    window = MainWindow(context, probe_device=False)
    window.resize(1400, 860)
    window.show()
    runs = context.store.list_runs()
    for run in reversed(runs):  # overlay every run on the curves, select the newest in the Runs table
        context.select_run(run.id)
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        for _ in range(20):  # let staggered plot creation and coalesced redraws finish
            app.processEvents()
            time.sleep(0.02)
        path = out / f"{window.tabs.tabText(i).lower()}.png"
        window.grab().save(str(path))
        saved.append(path)
    curves = window.panes.get("Curves")
    if hasattr(curves, "tabs"):  # the rollout browser of the GRPO run
        curves.tabs.setCurrentIndex(1)
        app.processEvents()
        window.tabs.setCurrentWidget(curves)
        path = out / "curves-rollouts.png"
        window.grab().save(str(path))
        saved.append(path)
    window.close_policy = "keep"
    window.close()
    context.store.close()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--workspace", help="an existing workspace to show instead of the demo one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="studio-shots-") as tmp:
        workspace = Path(args.workspace) if args.workspace else Path(tmp) / "workspace"
        if not args.workspace:
            build_demo_workspace(workspace)
        for path in take(Path(args.out), workspace):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
