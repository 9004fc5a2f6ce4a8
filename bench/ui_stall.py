"""UI stall while a run streams events: the studio's event loop must stay responsive during ingestion.

    python -m bench.ui_stall                 # 5 s at 200 events/s, prints a table
    python -m bench.ui_stall --seconds 10 --rate 500
    python -m bench.ui_stall --compare       # eager panes (the old window) vs lazy panes, side by side
    python -m bench.ui_stall --repeat 5      # the worst of 5 runs, and what the UI thread did then

A real child process (this module with ``--emit``) writes schema-v1 events to run_dir/events.jsonl at ``rate``
events/s, the studio's real RunManager follows it (tail every 250 ms → one SQLite transaction → signals) and the
real main window redraws, with **every pane built** (lazy panes are forced before measuring, so the Runs
table, live Curves plots and the rest all react to the events) and the device probe on, as in the app. A probe
QTimer fires every 10 ms; its lateness (actual interval − 10 ms) is how long the event loop was blocked.
Then a 1,000,000-point curve is panned and zoomed 30 times a second for up to 3 s (the ``pan_zoom`` phase), and a
real checkpoint (2 layers, random weights, a tokenizer trained on the demo data) streams replies into the Chat pane
for up to 3 s (the ``chat`` phase).
Target: max stall < 50 ms. Each run also names the cause of its longest stall (bench/stall_causes.py: the Qt
event, studio slot or garbage collection running then, wall vs CPU ms); runs repeat (``--repeat``, default 3)
and the report gives the maximum over them with the cause of the longest.
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

from bench.stall_causes import ThreadClock, format_interval  # standard library only: no Qt at import

PROBE_MS = 10
TARGET_MS = 50.0
# pan_zoom: a 1M-point curve panned and zoomed after the run; chat: a reply streaming into the Chat pane
PHASES = ("idle", "ingest", "pan_zoom", "chat")


# ------------------------------------------------------------------------------------------- the child
def emit_events(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    run_dir = Path(config["run_dir"])
    rate, seconds = float(config["rate"]), float(config["seconds"])
    total = int(rate * seconds)
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        def emit(type_: str, step: int, **fields) -> None:
            fh.write(json.dumps({"v": 1, "type": type_, "time": time.time(), "step": step, **fields}) + "\n")
            fh.flush()

        emit("run_started", 0, run_id=run_dir.name, method="grpo", config={}, world_size=1, device="cpu",
             params=0, dataset_tokens=0, total_steps=total, resumed_from=None, pid=os.getpid())
        start = time.perf_counter()
        for step in range(1, total + 1):
            delay = start + step / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if step % 50 == 0:
                emit("sample", step, samples=[{"prompt": "2+2=", "completion": "4", "reward": 1.0,
                                                "rewards": {"accuracy": 1.0}}] * 4)
            else:
                emit("metric", step, epoch=0, metrics={"loss": 3 * math.exp(-step / total) + 0.1 * math.sin(step),
                                                       "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 5000.0,
                                                       "reward/mean": step / total, "kl": 0.01})
        emit("checkpoint", total, path="checkpoints/step-final")
        emit("run_finished", total, status="completed", message="")
    return 0


def _emitter_command(config_path, resume=None, n_gpus=1) -> list[str]:
    return [sys.executable, "-m", "bench.ui_stall", "--emit", str(config_path)]


# ------------------------------------------------------------------------------------------- the probe
class _StallProbe:
    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)
        self.lateness: list[float] = []
        self._last = None
        self.worst = (0.0, 0.0, 0.0)  # (lateness ms, previous tick, this tick): the interval to explain
        self.clock = ThreadClock()
        self.worst_split: dict | None = None  # the worst interval split by thread (bench/stall_causes.py)

    def reset(self) -> None:
        self.lateness.clear()
        self.worst = (0.0, 0.0, 0.0)
        self.worst_split = None

    def start(self) -> None:
        self._last = time.perf_counter()
        self.clock.tick()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.clock.tick()
        self.lateness.append(max(0.0, (now - self._last) * 1000 - PROBE_MS))
        if self.lateness[-1] > self.worst[0]:
            self.worst = (self.lateness[-1], self._last, now)
            self.worst_split = self.clock.interval(now - self._last, idle_ms=PROBE_MS)
        self._last = now

    def summary(self) -> dict:
        values = sorted(self.lateness) or [0.0]
        return {"ticks": len(self.lateness), "max_stall_ms": round(values[-1], 1),
                "p99_ms": round(values[int(0.99 * (len(values) - 1))], 1),
                "mean_ms": round(sum(values) / len(values), 2), "threads": self.worst_split}


def _spin(seconds: float, until=None) -> None:
    """Run the event loop for ``seconds`` or until the signal ``until`` fires. A local QEventLoop, because
    QApplication.quit() in Qt 6 first closes every window (and the main window's close stops following runs)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    if until is not None:
        until.connect(loop.quit)
    loop.exec()


def run(seconds: float = 5.0, rate: float = 200.0, panes: list[str] | None = None, lazy: bool = True) -> dict:
    """Measure idle and ingesting stalls; returns {"idle": {...}, "ingest": {...}, "events": n, ...}.

    ``panes``: build the window with these panes only (e.g. ["Runs", "Curves"]) to attribute a stall.
    ``lazy``: panes built on first show (the window's default); False builds all at construction as before.
    Either way every pane is built before the stall is measured; ``lazy`` only changes ``build_s``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    import studio.panes

    if panes is not None:
        studio.panes.PANES[:] = [p for p in studio.panes.PANES if p[0] in panes]
    from studio.app import build_context
    from studio.heap import HeapFreezer
    from studio.main_window import MainWindow

    from bench.stall_causes import Spans, timed_application_class

    app = QApplication.instance() or timed_application_class()([])
    spans = getattr(app, "spans", None) or Spans()  # an app made elsewhere: slots and GC only
    watched = spans.watch()
    spans.watch_gc()
    with tempfile.TemporaryDirectory(prefix="ui-stall-") as tmp:
        t_build = time.perf_counter()
        context = build_context(Path(tmp) / "workspace")
        context.runs.command_builder = _emitter_command
        window = MainWindow(context, probe_device=True, lazy_panes=lazy)
        window.heap_freezer = HeapFreezer(window)  # as studio.app.open_window does
        build_s = time.perf_counter() - t_build
        for title in window.panes:  # every pane built before measuring, as after a user has opened each tab
            window.panes.get(title)
        window.show()
        window.show_pane("Curves")
        _spin(3.0)  # let the panes finish their start-up work (the Config pane sizes a model in a thread)
        probe = _StallProbe()
        probe.start()
        _spin(1.0)
        idle = probe.summary()
        idle["cause"] = spans.explain(*probe.worst[1:])

        probe.reset()
        ingested = {"n": 0}
        context.eventsIngested.connect(lambda _rid, evs: ingested.__setitem__("n", ingested["n"] + len(evs)))
        # launched as the Start button does; the window selects the new run itself (a deferred run-change
        # slot), so Runs and Curves follow it as they do for a person
        run_id = context.runs.launch({"method": "grpo", "rate": rate, "seconds": seconds})
        t0 = time.perf_counter()
        _spin(seconds + 30, until=context.runs.runFinished)
        wall = time.perf_counter() - t0
        probe.stop()
        ingest = probe.summary()
        ingest["cause"] = spans.explain(*probe.worst[1:])
        status = context.store.get_run(run_id).status
        if context.selected_run_id != run_id:
            raise RuntimeError("the window did not select the launched run: Curves did not plot it live")
        pan_zoom = _pan_zoom(window, probe, spans, min(seconds, 3.0))
        chat = _chat_stream(window, probe, spans, min(seconds, 3.0))
        window.close_policy = "keep"
        window.close()
        context.store.close()
    spans.unwatch(watched)
    spans.unwatch_gc()
    return {"seconds": seconds, "rate": rate, "events": ingested["n"], "wall_s": round(wall, 2), "status": status,
            "idle": idle, "ingest": ingest, "pan_zoom": pan_zoom, "chat": chat, "target_ms": TARGET_MS,
            "ok": max(result["max_stall_ms"] for result in (ingest, pan_zoom, chat)) < TARGET_MS,
            "load_avg": _load_average(), "cpus": os.cpu_count(), "lazy": lazy, "build_s": round(build_s, 2),
            "panes": [p[0] for p in studio.panes.PANES]}


def _pan_zoom(window, probe, spans, seconds: float) -> dict:
    """A 1,000,000-point curve in the Curves pane, panned and zoomed 30 times a second (as a mouse drag does),
    with the probe running; the stall summary of that phase."""
    import numpy as np
    from PySide6.QtCore import QTimer

    pane = window.panes["Curves"]
    n = 1_000_000
    steps = np.arange(n, dtype=np.float64)
    pane.presenter.add_series("big", "loss", steps, 5.0 * np.exp(-steps / 2e5) + np.sin(steps / 50.0) * 0.1)
    _spin(1.5)  # placed and drawn once
    view = pane.plots["loss"].plot.getViewBox()
    moves = {"n": 0}

    def move() -> None:
        i = moves["n"] = moves["n"] + 1
        span = n * (0.05 + 0.9 * abs(math.sin(i / 20)))  # zoom out and in
        lo = (n - span) * (0.5 + 0.5 * math.sin(i / 7))  # pan back and forth
        view.setXRange(lo, lo + span, padding=0)

    timer = QTimer()
    timer.setInterval(33)
    timer.timeout.connect(move)
    probe.reset()
    probe.start()
    timer.start()
    _spin(seconds)
    timer.stop()
    probe.stop()
    out = probe.summary()
    out["cause"] = spans.explain(*probe.worst[1:])
    out["moves"] = moves["n"]
    return out


def _chat_stream(window, probe, spans, seconds: float) -> dict:
    """Replies streamed into the Chat pane by a real checkpoint, one after another for ``seconds``; the stall
    summary of that phase. Random weights (std 0.3, as the chat tests use) give varied tokens, not one repeated."""
    import torch

    from core.config import ModelConfig
    from core.model import MiniMindForCausalLM
    from core.model.io import save_checkpoint
    from core.tokenizer import train_tokenizer

    ws = window.context.workspace
    demo = Path(__file__).resolve().parents[1] / "resources" / "demo"
    tokenizer = train_tokenizer([demo / "pretrain.jsonl", demo / "sft.jsonl"], vocab_size=384,
                                out_dir=ws.tokenizers_dir / "chat-bench")
    torch.manual_seed(0)
    model = MiniMindForCausalLM(ModelConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=4096))
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.3)
    save_checkpoint(model.eval(), ws.runs_dir / "chat-bench" / "checkpoints" / "step-000001", tokenizer)
    window.show_pane("Chat")
    pane = window.panes["Chat"]
    pane.presenter.refresh_models()
    pane.max_tokens.setValue(1000)
    state = {"replies": 0, "until": 0.0}

    def ask(*_args) -> None:
        if time.perf_counter() < state["until"]:
            state["replies"] += 1
            pane.input.setPlainText("Tell me a long story about the sea.")
            pane.send()

    pane.presenter.replyFinished.connect(ask)
    probe.reset()
    state["until"] = time.perf_counter() + seconds
    probe.start()
    ask()
    _spin(seconds)
    state["until"] = 0.0
    probe.stop()
    pane.presenter.stop()
    pane.presenter.wait(10.0)
    out = probe.summary()
    out["cause"] = spans.explain(*probe.worst[1:])
    out["replies"] = state["replies"]
    return out


def _load_average() -> float | None:
    """The machine's 1-minute load: stalls measured on a busy machine include other processes' time."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def print_table(result: dict) -> None:
    print(f"UI stall probe ({PROBE_MS} ms timer), {result['events']} events at {result['rate']:.0f}/s, "
          f"run {result['status']} in {result['wall_s']} s, panes: {', '.join(result['panes'])}")
    print(f"panes {'lazy' if result['lazy'] else 'eager'}: context + window built in {result['build_s']} s; "
          "every pane built before measuring")
    print(f"{'phase':<8} {'ticks':>6} {'max stall ms':>13} {'p99 ms':>8} {'mean ms':>8}")
    for phase in PHASES:
        r = result[phase]
        print(f"{phase:<8} {r['ticks']:>6} {r['max_stall_ms']:>13} {r['p99_ms']:>8} {r['mean_ms']:>8}")
    print(f"target: max stall < {result['target_ms']:.0f} ms -> {'OK' if result['ok'] else 'MISSED'}"
          f"  (load average {result['load_avg']} on {result['cpus']} CPUs; compare with the idle row)")
    for phase in PHASES:
        print(f"longest {phase} stall ran: " + format_cause(result[phase].get("cause")))
        print(f"  {' ' * len(phase)} threads: " + format_interval(result[phase].get("threads")))


def format_cause(cause: list | None) -> str:
    """'what (wall ms, CPU ms); ...' or a note that nothing on the UI thread ran that long."""
    if not cause:
        return "no event, slot or collection of 2 ms or more: the thread was not scheduled (machine load)"
    return "; ".join(f"{c['what']} ({c['wall_ms']} ms wall, {c['cpu_ms']} ms CPU)" for c in cause)


def worst_of(results: list[dict]) -> dict:
    """Several runs of one window: the maximum stall of each phase, with the cause of the longest."""
    out = {"runs": len(results)}
    for phase in PHASES:
        worst = max(results, key=lambda r: r[phase]["max_stall_ms"])[phase]
        out[phase] = {"max_stall_ms": worst["max_stall_ms"], "cause": worst.get("cause"),
                      "threads": worst.get("threads"),
                      "per_run_ms": [r[phase]["max_stall_ms"] for r in results],
                      "p99_ms": max(r[phase]["p99_ms"] for r in results)}
    out["ok"] = max(out[phase]["max_stall_ms"] for phase in PHASES[1:]) < TARGET_MS
    return out


def compare_switch_intervals(intervals: list[float], seconds: float, rate: float, panes, repeat: int) -> int:
    """Runs alternating between GIL switch intervals (ABAB..., then BABA.. so both see the same load); a table
    of each phase's max stall per run and the blocked time of the worst."""
    runs: dict[float, list[dict]] = {value: [] for value in intervals}
    for i in range(max(1, repeat)):
        for value in (intervals if i % 2 == 0 else intervals[::-1]):
            sys.setswitchinterval(value)
            runs[value].append(run(seconds, rate, panes, lazy=True))
    print(f"| switch interval | {' | '.join(f'{p} max stall (ms), per run' for p in PHASES[1:])} | "
          "worst stall blocked (ms) | load |")
    print("|---" * (len(PHASES) + 2) + "|")
    for value, results in runs.items():
        worst = worst_of(results)
        cells = [", ".join(map(str, worst[p]["per_run_ms"])) for p in PHASES[1:]]
        top = max(PHASES[1:], key=lambda p: worst[p]["max_stall_ms"])
        blocked = (worst[top].get("threads") or {}).get("blocked_ms")
        loads = [r["load_avg"] for r in results]
        print(f"| {value * 1000:g} ms | {' | '.join(cells)} | {blocked} ({top}) | {min(loads)}-{max(loads)} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ui_stall", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--panes", help="comma-separated pane titles to build (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the (lazy) window; the worst is reported")
    parser.add_argument("--compare", action="store_true",
                        help="run twice in this process: eager panes (before) then lazy panes (after)")
    parser.add_argument("--switch-interval", type=float, nargs="+", metavar="S",
                        help="Python's GIL switch interval(s) in seconds (sys.setswitchinterval); with several, the "
                             "runs alternate between them and each value's worst is reported")
    parser.add_argument("--emit", metavar="CONFIG", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.emit:
        return emit_events(args.emit)
    panes = args.panes.split(",") if args.panes else None
    if args.switch_interval and len(args.switch_interval) > 1:
        return compare_switch_intervals(args.switch_interval, args.seconds, args.rate, panes, args.repeat)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval[0])
    else:
        from studio.heap import share_the_gil

        share_the_gil()  # as studio.app.open_window does
    results = [run(args.seconds, args.rate, panes, lazy=False)] if args.compare else []
    lazy = [run(args.seconds, args.rate, panes, lazy=True) for _ in range(max(1, args.repeat))]
    for result in results + lazy:
        print_table(result)
        print()
    worst = worst_of(lazy)
    for phase in PHASES:
        w = worst[phase]
        print(f"worst of {worst['runs']} runs, {phase}: max stall {w['max_stall_ms']} ms (runs: "
              f"{', '.join(map(str, w['per_run_ms']))}), p99 up to {w['p99_ms']} ms; "
              f"it ran: {format_cause(w['cause'])}; {format_interval(w['threads'])}")
    print(f"target: max stall < {TARGET_MS:.0f} ms -> {'OK' if worst['ok'] else 'MISSED'}")
    return 0 if worst["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
