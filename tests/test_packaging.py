"""Packaging: the icon set, the desktop entry, the generated CLI reference, and the PyInstaller bundle itself.

The bundle test builds `MiniMindStudio/` with packaging/build.sh (PyInstaller's work folder is build.sh's own,
build/pyinstaller, so a rebuild with unchanged sources reuses its analysis), runs the frozen app's `--self-test`, and trains two
steps with the frozen trainer (`MiniMindStudio --worker --config FILE`), the path the studio takes in a bundle,
then checks that model's GGUF export with the bundle's llama.cpp (`MiniMindStudio --parity-worker`) and scores
both with the Evaluate pane's worker (`MiniMindStudio --eval-worker SPEC`).
`MINIMIND_BUNDLE_DIST=dist pytest tests/test_packaging.py` tests an existing build instead of building one.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.display import xvfb

REPO = Path(__file__).resolve().parents[1]
ICONS = REPO / "resources" / "icons"
SIZES = [16, 24, 32, 48, 64, 128, 256, 512]


def test_icon_pngs_have_their_sizes_and_are_drawn(qapp):
    from PySide6.QtGui import QImage

    for size in SIZES:
        img = QImage(str(ICONS / f"minimind-studio-{size}.png"))
        assert (img.width(), img.height()) == (size, size), size
        centre = img.pixelColor(size // 2, size // 2)
        corner = img.pixelColor(0, 0)
        assert centre.alpha() == 255 and corner.alpha() == 0  # a rounded tile on a transparent background


def test_ico_lists_png_entries_up_to_256(qapp):
    from PySide6.QtGui import QImage

    data = (ICONS / "minimind-studio.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1) and count >= 5
    dims = []
    for i in range(count):
        w, h, _, _, _, bpp, length, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        assert bpp == 32 and data[offset:offset + 8] == b"\x89PNG\r\n\x1a\n"
        img = QImage.fromData(data[offset:offset + length])
        assert img.width() == (w or 256)
        dims.append(w or 256)
    assert 16 in dims and 256 in dims


def test_desktop_entry_is_complete():
    text = (REPO / "resources" / "minimind-studio.desktop").read_text(encoding="utf-8")
    assert text.startswith("[Desktop Entry]\n")
    entry = dict(line.split("=", 1) for line in text.splitlines()[1:] if "=" in line)
    assert entry["Type"] == "Application" and entry["Name"] == "MiniMind Studio"
    assert entry["Exec"].split()[0] == "MiniMindStudio"
    assert entry["Icon"] == "minimind-studio" and entry["Categories"].endswith(";")


def test_cli_reference_matches_the_parsers():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_cli_docs.py"), "--check"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr


def tiny_training_inputs(tmp: Path) -> Path:
    """A config for 2 tiny CPU steps on the built-in demo data, with a freshly trained small tokenizer."""
    from core.tokenizer import train_tokenizer

    data = tmp / "pretrain.jsonl"
    lines = (REPO / "resources" / "demo" / "pretrain.jsonl").read_text(encoding="utf-8").splitlines()[:200]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    train_tokenizer([data], vocab_size=320, out_dir=tmp / "tokenizer")
    config = {"method": "pretrain", "model": "tiny", "run_dir": str(tmp / "run"), "max_steps": 2, "batch_size": 2,
              "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 0,
              "data": {"files": [str(data)], "seq_len": 32, "tokenizer": str(tmp / "tokenizer")}}
    path = tmp / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bundle_app(tmp_path_factory) -> Path:
    """The built app: packaging/build.sh's output, built once for this module (or MINIMIND_BUNDLE_DIST's)."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (pip install 'pyinstaller>=6.5'): the bundle cannot be built")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: the bundle would lack llama.cpp (build.sh refuses)")
    prebuilt = os.environ.get("MINIMIND_BUNDLE_DIST")  # test an existing build.sh output instead of building
    dist = Path(prebuilt).resolve() if prebuilt else tmp_path_factory.mktemp("bundle") / "dist"
    if not prebuilt:
        env = dict(os.environ, DIST=str(dist), WORK=str(REPO / "build" / "pyinstaller"), PYTHON=sys.executable)
        build = subprocess.run(["bash", str(REPO / "packaging" / "build.sh")], capture_output=True, text=True,
                               env=env, timeout=1500)
        assert build.returncode == 0, build.stderr[-4000:]
    app = dist / "MiniMindStudio" / "MiniMindStudio"
    assert app.is_file() and os.access(app, os.X_OK)
    assert (dist / "MiniMindStudio" / "minimind-studio.desktop").is_file()
    return app


@pytest.mark.slow
@pytest.mark.timeout(2400)  # PyInstaller analyses all of torch: ~4 CPU-minutes, far longer on a busy machine
def test_bundle_builds_self_tests_and_trains_with_the_frozen_worker(bundle_app, tmp_path, monkeypatch):
    app = bundle_app

    run_env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="1")
    run_env.pop("PYTHONPATH", None)  # the bundle must not lean on the source tree
    selftest = subprocess.run([str(app), "--self-test"], capture_output=True, text=True, env=run_env,
                              cwd=tmp_path, timeout=300)
    assert selftest.returncode == 0, selftest.stdout + selftest.stderr[-3000:]
    assert "trainer entry: ok" in selftest.stdout and "--worker" in selftest.stdout

    config = tiny_training_inputs(tmp_path)
    train = subprocess.run([str(app), "--worker", "--config", str(config)], capture_output=True, text=True,
                           env=run_env, cwd=tmp_path, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    events = [json.loads(line) for line in train.stdout.splitlines() if line.startswith("{")]
    kinds = [e["type"] for e in events if e["type"] != "prepare"]  # tokenizing the data comes first
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert events[-1]["status"] == "completed"
    assert [e["step"] for e in events if e["type"] == "metric"] == [1, 2]
    assert (tmp_path / "run" / "checkpoints" / "latest").is_file()

    check_parity_through_the_bundle(app, tmp_path / "run", tmp_path / "frozen.gguf", monkeypatch)
    check_eval_worker_of_the_bundle(app, [tmp_path / "run", tmp_path / "frozen.gguf"], tmp_path, run_env)


def check_eval_worker_of_the_bundle(app: Path, models: list[Path], tmp: Path, env: dict) -> None:
    """The Evaluate pane's worker in a bundle is `<app> --eval-worker SPEC` (studio/worker/command.py): a benchmark
    and the tool-use cases score on the checkpoint (torch) and on its GGUF (the bundle's llama.cpp)."""
    spec = tmp / "eval-spec.json"
    spec.write_text(json.dumps({"models": [str(m) for m in models], "tasks": ["demo-facts", "tool-use"],
                                "settings": {"limit": 2, "k_shot": 0, "batch_size": 4, "max_new_tokens": 8,
                                             "max_turns": 1, "ngram": 13}}), encoding="utf-8")
    proc = subprocess.run([str(app), "--eval-worker", str(spec)], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [e for e in lines if e["type"] == "error"] == []
    results = {(e["model"], e["task"]): e["result"] for e in lines if e["type"] == "result"}
    assert set(results) == {(str(m), t) for m in models for t in ("demo-facts", "tool-use")}
    assert all(r["n"] == 2 for r in results.values())
    assert lines[-1] == {"type": "finished", "status": "completed"}


def check_parity_through_the_bundle(app: Path, run_dir: Path, gguf_file: Path, monkeypatch) -> None:
    """The Export pane's parity child in a bundle is `<app> --parity-worker REQUEST` (no .py file to run):
    llama.cpp from the bundle must load the file and agree with torch."""
    from core.export import check_parity, export_gguf
    from core.model.io import load_model

    export_gguf(run_dir, gguf_file, "f32", check=False)
    model, tok = load_model(run_dir)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app))
    report = check_parity(model, tok, gguf_file, "f32", write=False)
    assert report["passed"] and report["tokenizer_match"], report


def viewable_windows(display: str) -> list[str]:
    """Titles of the mapped top-level windows: the main window, and any dialog shown over it."""
    env = dict(os.environ, DISPLAY=display)
    tree = subprocess.run(["xwininfo", "-root", "-children"], capture_output=True, text=True, env=env).stdout
    titles = []
    for wid, title in re.findall(r'^\s+(0x[0-9a-f]+) "([^"]*)"', tree, re.MULTILINE):
        info = subprocess.run(["xwininfo", "-id", wid], capture_output=True, text=True, env=env).stdout
        if "Map State: IsViewable" in info:
            titles.append(title)
    return titles


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_bundle_opens_its_window_on_a_fresh_home_without_a_dialog(bundle_app, tmp_path):
    """What a person sees on a first start of the bundle: the main window on the default workspace (the docked
    demo guide inside it), under a real X server, and no dialog in front of it."""
    if not (shutil.which("Xvfb") and shutil.which("xwininfo")):
        pytest.skip("needs Xvfb and xwininfo for a real window (apt-get install xvfb x11-utils)")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MINIMIND_WORKSPACE", "QT_QPA_PLATFORM", "PYTHONPATH")}
    title = f"MiniMind Studio — {home / 'MiniMindStudio'}"
    with xvfb() as display, open(tmp_path / "app.err", "w") as err:
        env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
        proc = subprocess.Popen([str(bundle_app)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 120
            while title not in viewable_windows(display):
                assert proc.poll() is None, (tmp_path / "app.err").read_text()[-3000:]
                assert time.monotonic() < deadline, f"no window {title!r}: {viewable_windows(display)}"
                time.sleep(0.5)
            time.sleep(5)  # start-up dialogs are raised from the event loop's first passes
            assert viewable_windows(display) == [title]
            assert proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(60)
    assert "Traceback" not in (tmp_path / "app.err").read_text()
    assert (home / "MiniMindStudio" / "studio.db").is_file()  # the default workspace, made on a first start
