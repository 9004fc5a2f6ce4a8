"""Studio cold start: seconds from launching the app process to its main window shown and first painted.

    python -m bench.cold_start              # 2 launches, prints a table
    python -m bench.cold_start --launches 3

Each launch is a fresh process (`python -m bench.cold_start --child T0 WORKSPACE`) that does what
`python -m studio` does to open a workspace (build the context: store, run manager; the main window, its first
pane, and the device probe, which starts in a thread right after the window is shown) on the offscreen
platform, then reports wall-clock marks relative to T0, the parent's time just before spawning it: imports done, window built, show() returned, first paint event. The first launch is the coldest
(the OS file cache may not hold the libraries yet); later ones are warm. A fresh empty workspace each time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def child(t0: float, workspace: str) -> int:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    marks = {"interpreter": time.time() - t0}
    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from studio.app import open_window

    marks["imports"] = time.time() - t0
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = open_window(Path(workspace))  # the device probe on, as `python -m studio` runs it
    marks["window_built"] = time.time() - t0

    class FirstPaint(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.Paint and "first_paint" not in marks:
                marks["first_paint"] = time.time() - t0
                QTimer.singleShot(0, app.quit)
            return False

    watcher = FirstPaint()
    window.installEventFilter(watcher)
    window.show()
    marks["shown"] = time.time() - t0
    QTimer.singleShot(20000, app.quit)  # never hang the suite
    app.exec()
    print(json.dumps({k: round(v, 3) for k, v in marks.items()}), flush=True)
    window.close_policy = "keep"  # an empty workspace has no runs; never ask
    window.close()
    return 0 if "first_paint" in marks else 1


def run(launches: int = 2, timeout: float = 300.0) -> dict:
    """{"launches": [{marks}], "cold_s", "warm_s"}; *_s are times to first paint."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    results = []
    for _ in range(launches):
        with tempfile.TemporaryDirectory(prefix="bench-cold-") as ws:
            t0 = time.time()
            proc = subprocess.run([sys.executable, "-m", "bench.cold_start", "--child", repr(t0), ws], cwd=REPO,
                                  env=env, capture_output=True, text=True, timeout=timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"the studio did not paint (rc {proc.returncode}): {proc.stderr[-1500:]}")
            marks = json.loads(lines[-1])
            marks["process_exit"] = round(time.time() - t0, 3)
            results.append(marks)
    warm = results[1:] or results
    return {"launches": results, "cold_s": results[0]["first_paint"],
            "warm_s": round(min(r["first_paint"] for r in warm), 3)}


def print_table(r: dict) -> None:
    keys = ["interpreter", "imports", "window_built", "shown", "first_paint"]
    print("Studio cold start (offscreen), seconds since the process was launched")
    print("launch  " + "  ".join(f"{k:>12}" for k in keys))
    for i, m in enumerate(r["launches"], 1):
        print(f"{i:<6}  " + "  ".join(f"{m.get(k, float('nan')):>12.2f}" for k in keys))
    print(f"cold {r['cold_s']:.2f} s, warm {r['warm_s']:.2f} s to the first paint of the main window")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.splitlines()[0])
    p.add_argument("--launches", type=int, default=2)
    p.add_argument("--child", nargs=2, metavar=("T0", "WORKSPACE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        return child(float(a.child[0]), a.child[1])
    print_table(run(a.launches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
