"""Screenshots of the studio from a real window over a really trained workspace: docs/screenshots/*.png.

    python scripts/screenshots.py [--out docs/screenshots] [--workspace DIR] [--grpo-steps N] [--demo-plan|--fast]

Nothing is made up. The script starts its own Xvfb display (1280×800) and opens the studio's MainWindow on it with
Qt's xcb platform, on a fresh workspace (studio/workspace.py layout). It writes the built-in demo data
(`core.data.generate_demo_data`) into the workspace's datasets/, trains the demo tokenizer into tokenizers/, then
trains through the studio's own RunManager, as the Start button does: pretrain → SFT of the tiny preset with
`minimind demo`'s settings (core/demo.py's FULL plan at half the steps and half the batch; `--demo-plan` for the
whole plan, whose SFT model is the demo model that calls the calculator), then a short GRPO run on rl.jsonl from
the SFT run. It exports the SFT checkpoint to GGUF q8_0 through the Export
pane (core's llama.cpp parity check runs), asks the Chat pane the demo question with the calculator tool on, and
evaluates the SFT and the GRPO model in the Evaluate pane on `tool-use` and `rl-signal` (10 built-in cases, 4
samples each).

Each picture is the X screen, grabbed with QScreen.grabWindow (what the X server shows, not a widget's own paint):
curves.png while the pretrain run streams, curves-rollouts.png while GRPO runs, then runs, runs-lineage,
runs-compare, export, chat, evaluate, datasets and config. PNGs are palette-reduced when that keeps them under ~300 KB.
Measured: 13 min 54 s with the default plan on a 2-core machine shared with other work (load average 6–10);
6 min 52 s with `--demo-plan` and OMP_NUM_THREADS=1 (one thread per trainer; load average ~4), after commit
27380f9's recipe (600 pretrain + 250 SFT steps); 8 min 48 s with `--demo-plan` and OMP_NUM_THREADS=1 on an
AVX2-only 2-core machine beside a test suite, the Evaluate pane included (2026-12-07).
`--fast` shrinks every run to a few steps (a smoke test of the script: the pictures are not for the docs).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import signal
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCREEN = (1280, 800)
MAX_PNG_BYTES = 300_000
CHAT_TOOL = "calculate_math"
TERMINAL = ("completed", "stopped", "failed", "interrupted")


def say(message: str) -> None:
    print(f"[screenshots {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ X display
def start_xvfb(size: tuple[int, int] = SCREEN) -> tuple[subprocess.Popen, str]:
    """An Xvfb server on a free display number (Xvfb picks it and writes it to -displayfd)."""
    if shutil.which("Xvfb") is None:
        raise SystemExit("Xvfb is not installed: apt-get install -y xvfb xauth (see README.md's set-up)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", f"{size[0]}x{size[1]}x24",
                             "-nolisten", "tcp", "-noreset"], pass_fds=(write_fd,), stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        raise SystemExit("Xvfb did not start (no display number on -displayfd)")
    return proc, f":{number}"


# ------------------------------------------------------------------------------------------------ workspace
def plans(size: str, grpo_steps: int):
    """(pretrain/SFT plan, GRPO steps). "demo": `minimind demo`'s own plan (the model that calls the calculator;
    about 7 minutes in all on a shared 2-core machine); "shots" (default): the same data,
    tokenizer and settings at half the steps and half the batch, a quarter of the work; "fast": a smoke test."""
    from core.demo import FAST, FULL

    if size == "fast":
        return FAST, 4
    if size == "demo":
        return FULL, grpo_steps
    return replace(FULL, pretrain_steps=FULL.pretrain_steps // 2, sft_steps=FULL.sft_steps // 2,
                   batch_size=FULL.batch_size // 2), grpo_steps


def prepare_workspace(root: Path, plan) -> dict:
    """Demo data in datasets/demo, the demo tokenizer in tokenizers/demo; returns the paths the runs need."""
    from core.data import generate_demo_data
    from core.data.demo import demo_tool_files
    from core.demo import stage_files, train_demo_tokenizer
    from studio.workspace import Workspace

    ws = Workspace(root).ensure()
    data_dir = ws.datasets_dir / "demo"
    data = generate_demo_data(data_dir, sizes=dict(plan.data_sizes) or None)
    files = {**data, **demo_tool_files(data_dir)}
    tokenizer = ws.tokenizers_dir / "demo"
    train_demo_tokenizer(stage_files(data_dir)["tokenizer"], plan, tokenizer)
    return {"workspace": ws, "data_dir": data_dir, "files": files, "tokenizer": tokenizer}


def stage_config(method: str, plan, paths: dict, init: Path | None) -> dict:
    """A pretrain or SFT config exactly as `minimind demo` builds it, with checkpoints along the way for the
    lineage graph; the RunManager sets run_dir."""
    from core.demo import stage_files, train_config

    files = stage_files(paths["data_dir"])[method]
    cfg = train_config(method, plan, files, paths["tokenizer"], Path("unused"), init)
    cfg.pop("run_dir")
    cfg["data"]["cache_dir"] = str(paths["workspace"].root / "cache")
    cfg["save_every"] = max(1, cfg["max_steps"] // 2)
    cfg["keep_last"] = 2
    return cfg


def grpo_config(paths: dict, init: Path, steps: int) -> dict:
    """GRPO on the demo's rl.jsonl (answer + length rewards), from the SFT run: a short run, sampled often."""
    return {"method": "grpo", "model": "tiny", "init": str(init), "max_steps": steps, "batch_size": 2,
            "device": "cpu", "precision": "fp32", "log_every": 2, "save_every": 0, "keep_last": 1,
            "data": {"files": [str(paths["files"]["rl"])], "max_len": 256,
                     "cache_dir": str(paths["workspace"].root / "cache")},
            "optim": {"lr": 5e-4, "warmup_steps": 2, "schedule": "cosine"},
            "method_options": {"num_generations": 4, "max_new_tokens": 24, "sample_every": 4, "samples_logged": 4}}


# ------------------------------------------------------------------------------------------------ the window
class Studio:
    """The real MainWindow on the X display, driven as a person would, with pictures taken on the way."""

    def __init__(self, workspace: Path, out: Path) -> None:
        from PySide6.QtWidgets import QApplication

        from studio.app import build_context
        from studio.main_window import MainWindow
        from studio.widgets.theme import follow_system_theme

        self.app = QApplication.instance() or QApplication([sys.argv[0]])
        self.app.setApplicationName("MiniMind Studio")
        follow_system_theme(self.app)
        self.context = build_context(workspace)
        self.window = MainWindow(self.context, probe_device=False)
        self.window.setGeometry(0, 0, *SCREEN)  # no window manager on Xvfb: the window is the whole screen
        self.window.show()
        self.out = out
        self.saved: list[Path] = []
        self.settle(1.0)

    def settle(self, seconds: float = 0.6) -> None:
        """Let the event loop run: staggered plot creation, coalesced redraws, the ingest thread's events."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.app.processEvents()
            time.sleep(0.02)

    def wait_until(self, done, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
            self.settle(0.25)

    def shot(self, name: str) -> Path:
        """The X screen as the server shows it (QScreen.grabWindow of the root window), saved compact."""
        self.settle()
        path = self.out / f"{name}.png"
        pixmap = self.app.primaryScreen().grabWindow(0)
        if not pixmap.save(str(path)):
            raise SystemExit(f"could not write {path}")
        compact_png(path)
        self.saved.append(path)
        say(f"{path} ({path.stat().st_size // 1000} KB)")
        return path

    # ---- runs
    def launch(self, config: dict, name: str, parent: str | None = None) -> str:
        run_id = self.context.runs.launch(config, name=name, parent_run_id=parent)
        self.settle(0.5)
        return run_id

    def status(self, run_id: str) -> str:
        run = self.context.store.get_run(run_id)
        return run.status if run else "missing"

    def step(self, run_id: str) -> int:
        return self.context.runs.progress(run_id)[0] or 0

    def wait_finished(self, run_id: str, timeout: float) -> None:
        self.wait_until(lambda: self.status(run_id) in TERMINAL, timeout, f"run {run_id}")
        if self.status(run_id) != "completed":
            run = self.context.store.get_run(run_id)
            raise SystemExit(f"run {run_id} ended {run.status}: {run.status_message} (see {run.run_dir})")
        say(f"{run_id}: completed at step {self.step(run_id)}")

    def wait_step(self, run_id: str, step: int, timeout: float) -> None:
        self.wait_until(lambda: self.step(run_id) >= step or self.status(run_id) in TERMINAL, timeout,
                        f"step {step} of {run_id}")

    def run_dir(self, run_id: str) -> Path:
        return Path(self.context.store.get_run(run_id).run_dir)

    def last_checkpoint(self, run_id: str) -> Path:
        """The run's newest checkpoint: the next stage starts from it (an edge of the lineage graph)."""
        return max((self.run_dir(run_id) / "checkpoints").glob("step-*"))

    # ---- panes
    def pane(self, title: str):
        self.window.show_pane(title)
        self.settle(0.3)
        return self.window.panes[title]

    def export_gguf(self, checkpoint: Path, qtype: str = "q8_0") -> dict:
        pane = self.pane("Export")
        pane.presenter.refresh_sources()
        index = pane.source.findData(str(checkpoint))
        if index < 0:
            raise SystemExit(f"the Export pane does not list {checkpoint}")
        pane.source.setCurrentIndex(index)
        pane.qtype.setCurrentText(qtype)
        pane.gguf_btn.click()
        self.settle(0.5)
        self.wait_until(lambda: not pane.presenter.busy and pane.presenter.last is not None, 600, "the export")
        result = pane.presenter.last
        if result.get("error"):
            raise SystemExit(f"export failed: {result['error']}")
        return result

    def chat(self, model_path: str, question: str, tools: list[str]) -> dict:
        from PySide6.QtCore import Qt

        pane = self.pane("Chat")
        pane.presenter.refresh_models()
        index = pane.model_boxes[0].findData(model_path)
        if index < 0:
            raise SystemExit(f"the Chat pane does not list {model_path}")
        pane.model_boxes[0].setCurrentIndex(index)
        pane.temperature.setValue(0.0)  # greedy: the demo model's tested answer
        pane.max_tokens.setValue(96)
        for i in range(pane.tool_list.count()):
            item = pane.tool_list.item(i)
            item.setCheckState(Qt.Checked if item.text() in tools else Qt.Unchecked)
        pane.input.setPlainText(question)
        finished: list[dict] = []
        pane.presenter.replyFinished.connect(lambda _slot, info: finished.append(info))
        pane.send_btn.click()
        self.wait_until(lambda: finished and not pane.presenter.busy, 300, "the chat reply")
        self.settle(0.5)
        history = pane.presenter.history(0)
        return {"reply": finished[0], "tool_calls": [m for m in history if m.get("role") == "tool"]}

    def evaluate(self, models: list[str], tasks: list[str], limit: int, samples: int) -> list[dict]:
        """Tick `models` and `tasks` in the Evaluate pane, set the items per task and RL-signal samples, press Run,
        wait for the worker, and click the last model's last task cell; returns the stored rows."""
        from PySide6.QtCore import Qt

        pane = self.pane("Evaluate")
        pane.presenter.refresh_sources()
        for widget, wanted in ((pane.models, models), (pane.task_list, tasks)):
            found = set()
            for i in range(widget.count()):
                item = widget.item(i)
                tick = item.data(Qt.ItemDataRole.UserRole) in wanted
                item.setCheckState(Qt.CheckState.Checked if tick else Qt.CheckState.Unchecked)
                found |= {item.data(Qt.ItemDataRole.UserRole)} if tick else set()
            if found != set(wanted):
                raise SystemExit(f"the Evaluate pane does not list {sorted(set(wanted) - found)}")
        pane.limit.setValue(limit)
        pane.samples.setValue(samples)
        finished: list[str] = []
        pane.presenter.finished.connect(finished.append)
        pane.run_btn.click()
        self.wait_until(lambda: finished, 1800, "the evaluation")
        if finished[0] != "completed":
            raise SystemExit(f"the evaluation ended {finished[0]}: {pane.presenter.errors}")
        pane.table.setCurrentCell(pane.table.rowCount() - 1, pane.table.columnCount() - 1)
        pane.show_cell(pane.table.rowCount() - 1, pane.table.columnCount() - 1)
        self.settle(1.0)
        return [{k: r[k] for k in ("model_label", "task", "accuracy", "n")} for r in pane.presenter.results()]

    def close(self) -> None:
        """As quitting the app does: the panes' workers stop (the chat's llama.cpp model is closed; left to the
        interpreter's exit, Llama.__del__ raises), the window closes, its objects are deleted."""
        from PySide6.QtCore import QEvent

        for title in self.window.panes:
            if self.window.panes.is_built(title):
                shutdown = getattr(getattr(self.window.panes[title], "presenter", None), "shutdown", None)
                if callable(shutdown):
                    shutdown()
        for run_id in self.context.runs.live_run_ids():  # interrupted: its trainers must not outlive it
            self.context.runs.kill(run_id)
        self.window.close_policy = "keep"
        self.window.close()
        self.context.store.close()
        self.window.deleteLater()
        self.context.deleteLater()
        self.app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)


def compact_png(path: Path) -> None:
    """Re-save optimised; when still over MAX_PNG_BYTES, as 256 colours (flat UI colours survive that)."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
    rgb.save(path, optimize=True)
    if path.stat().st_size > MAX_PNG_BYTES:
        rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


# ------------------------------------------------------------------------------------------------ the story
def take(studio: Studio, paths: dict, plan, grpo_steps: int) -> dict:
    """Train pretrain → SFT → GRPO through the RunManager, export, chat, evaluate; a picture at each stage."""
    from core.demo import FAST
    from studio.dialogs.first_run import CHAT_QUESTION

    facts: dict = {}
    datasets = studio.pane("Datasets")
    datasets.presenter.add_paths(sorted(paths["data_dir"].glob("*.jsonl")))
    if datasets.file_list.count():
        datasets.file_list.setCurrentRow(0)

    pre_cfg = stage_config("pretrain", plan, paths, None)
    pre = studio.launch(pre_cfg, "pretrain-tiny")
    studio.pane("Curves")
    studio.wait_step(pre, max(2, pre_cfg["max_steps"] * 3 // 5), 1800)
    studio.settle(2.0)  # the last ingested events reach the plots
    facts["curves_at_step"] = studio.step(pre)
    studio.shot("curves")  # mid-run: the curves grow while the trainer streams
    studio.wait_finished(pre, 1800)

    sft_cfg = stage_config("sft", plan, paths, studio.last_checkpoint(pre))
    sft = studio.launch(sft_cfg, "sft-tiny", parent=pre)
    studio.wait_finished(sft, 1800)

    grpo = studio.launch(grpo_config(paths, studio.last_checkpoint(sft), grpo_steps), "grpo-tiny", parent=sft)
    curves = studio.pane("Curves")
    studio.wait_step(grpo, max(2, grpo_steps // 2), 1800)
    studio.wait_until(lambda: curves.samples.rowCount() or studio.status(grpo) in TERMINAL, 600, "rollouts")
    curves.tabs.setCurrentIndex(1)  # the rollout browser, mid-run
    if curves.samples.rowCount():
        curves.samples.setCurrentCell(0, 1)  # one rollout read whole below the list
    studio.settle(1.5)
    facts["rollouts_at_step"] = studio.step(grpo)
    studio.shot("curves-rollouts")
    curves.tabs.setCurrentIndex(0)
    studio.wait_finished(grpo, 1800)

    exported = studio.export_gguf(studio.last_checkpoint(sft))
    facts["parity"] = exported.get("parity")
    studio.shot("export")

    answer = studio.chat(exported["path"], CHAT_QUESTION, [CHAT_TOOL])
    facts["chat"] = {"question": CHAT_QUESTION, "tool_results": answer["tool_calls"],
                     "reply": answer["reply"].get("text")}
    studio.shot("chat")

    # tool use, and what an RL run could learn from (rl-signal), for the SFT model and the GRPO model after it
    fast = plan is FAST  # 10 of the 20 built-in cases, 4 samples each: minutes of CPU, not tens
    facts["evaluate"] = studio.evaluate([str(studio.last_checkpoint(sft)), str(studio.last_checkpoint(grpo))],
                                        ["tool-use", "rl-signal"], limit=2 if fast else 10, samples=2 if fast else 4)
    studio.shot("evaluate")

    runs = studio.pane("Runs")
    studio.context.select_run(sft)
    runs.views.show_view("History")
    studio.shot("runs")
    runs.views.show_view("Lineage")
    studio.shot("runs-lineage")
    compare = runs.views.show_view("Compare")
    compare.set_checked([pre, sft])
    if "loss" in compare.result.get("names", []):
        compare.metric.setCurrentText("loss")
    studio.shot("runs-compare")
    runs.views.show_view("History")

    studio.pane("Datasets")
    studio.shot("datasets")
    config = studio.pane("Config")
    estimates: list[dict] = []  # the Estimate box fills in from a worker thread: seconds on a loaded machine
    config.presenter.estimateChanged.connect(estimates.append)
    # The SFT run's config: a GRPO config read back flags its default method_options.rewards (Config pane).
    config.set_config(json.loads((studio.run_dir(sft) / "config.json").read_text()))
    studio.wait_until(lambda: estimates, 120, "the Config pane's estimate")
    studio.settle(1.5)
    studio.shot("config")
    return facts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--workspace", help="train into this (new or empty) folder and keep it; default: a "
                        "temporary folder, deleted at the end")
    parser.add_argument("--grpo-steps", type=int, default=40, help="steps of the GRPO run (default 40)")
    parser.add_argument("--demo-plan", action="store_true",
                        help="pretrain and SFT with `minimind demo`'s full plan (its tool-calling model; slower)")
    parser.add_argument("--fast", action="store_true", help="a few steps per run: checks the script, not the docs")
    args = parser.parse_args()
    t0 = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleans up: the runs are stopped, Xvfb ends
    xvfb, display = start_xvfb()
    os.environ.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
    os.environ.pop("WAYLAND_DISPLAY", None)
    plan, grpo_steps = plans("fast" if args.fast else "demo" if args.demo_plan else "shots", args.grpo_steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="studio-shots-") as tmp:
            root = Path(args.workspace) if args.workspace else Path(tmp) / "workspace"
            say(f"workspace {root}, display {display}; data and tokenizer")
            paths = prepare_workspace(root, plan)
            studio = Studio(root, out)
            try:
                facts = take(studio, paths, plan, grpo_steps)
            finally:
                studio.close()
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    facts["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(facts, indent=2, ensure_ascii=False, default=str))
    for path in studio.saved:
        print(path)
    return 0


if __name__ == "__main__":
    code = main()
    # Everything is written and cleaned up by now. Skip the interpreter's teardown: Qt, pyqtgraph and llama.cpp
    # objects freed in Python's last garbage collection crashed it once in two --demo-plan runs (SIGSEGV, exit
    # 139) after every picture was saved.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
