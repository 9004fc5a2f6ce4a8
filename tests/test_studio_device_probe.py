"""The status bar's device probe reads NVIDIA GPUs through nvidia-smi (or NVML) and never creates a CUDA context in
the studio's process. This machine has no GPU, so a stand-in `nvidia-smi` (a script printing what the real one
prints for `--query-gpu ... --format=csv,noheader,nounits`) is put first on PATH; the probe runs it as a real child
process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.fixtures.train import REPO

ROWS = ["0, GPU-aaaa-0000, NVIDIA Stand-in A, 81920, 40960", "1, GPU-bbbb-1111, NVIDIA Stand-in B, 16384, 8192"]


@pytest.fixture()
def smi_path(tmp_path):
    """A folder holding a stand-in nvidia-smi, for PATH."""
    def make(rows=ROWS, status=0):
        folder = tmp_path / f"bin{status}"
        folder.mkdir()
        script = folder / "nvidia-smi"
        script.write_text("#!/bin/sh\n" + "".join(f"echo '{row}'\n" for row in rows) + f"exit {status}\n")
        script.chmod(0o755)
        return str(folder)
    return make


def test_the_probe_names_the_first_visible_gpu_its_memory_and_the_count(monkeypatch, smi_path):
    from studio.device_info import probe_device

    monkeypatch.setenv("PATH", smi_path() + os.pathsep + os.environ["PATH"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    info = probe_device()
    assert (info.kind, info.name, info.count) == ("cuda", "NVIDIA Stand-in A", 2)
    assert info.memory_total_gb == pytest.approx(81920 * 2**20 / 1e9)
    assert info.memory_free_gb == pytest.approx(40960 * 2**20 / 1e9)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # what a run would see
    assert (probe_device().name, probe_device().count) == ("NVIDIA Stand-in B", 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-bbbb")
    assert probe_device().name == "NVIDIA Stand-in B"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert probe_device().kind == "cpu"


def test_a_failing_or_garbled_nvidia_smi_gives_the_cpu_line(monkeypatch, smi_path):
    from studio.device_info import probe_device

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", smi_path(status=9) + os.pathsep + os.environ["PATH"])
    assert probe_device().kind == "cpu"
    monkeypatch.setenv("PATH", smi_path(rows=["No devices were found"]) + os.pathsep + os.environ["PATH"])
    assert probe_device().kind == "cpu"


STUDIO = textwrap.dedent("""
    import json, sys
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from studio.app import build_context
    from studio.main_window import MainWindow
    context = build_context(sys.argv[1])
    window = MainWindow(context, probe_device=True)
    loop = QEventLoop()
    window._deviceProbed.connect(lambda _text: QTimer.singleShot(0, loop.quit))
    QTimer.singleShot(120_000, loop.quit)  # a bound, not a wait: the probe's signal ends the loop
    loop.exec()
    torch = sys.modules.get("torch")
    print(json.dumps({"label": window.device_label.text(), "torch_imported": torch is not None,
                      "cuda_initialised": bool(torch is not None and torch.cuda.is_initialized())}))
    context.runs.shutdown()
""")


def test_the_status_bar_shows_the_gpu_and_the_studio_never_initialises_cuda(tmp_path, smi_path):
    """A real studio process (offscreen): the status bar shows the GPU nvidia-smi names, and torch, let alone
    torch.cuda, was never loaded by the probe."""
    env = dict(os.environ, PATH=smi_path() + os.pathsep + os.environ["PATH"], QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(REPO))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    out = subprocess.run([sys.executable, "-c", STUDIO, str(tmp_path / "ws")], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["label"] == "2× NVIDIA Stand-in A · 42.9 / 85.9 GB free", result
    assert result == {**result, "torch_imported": False, "cuda_initialised": False}
