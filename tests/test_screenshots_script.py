"""scripts/screenshots.py end to end in its --fast form: a real Xvfb display, real training runs through the
studio's RunManager, a GGUF export with its parity report, a chat reply, and one 1280×800 PNG per view."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHOTS = ("curves", "curves-rollouts", "export", "chat", "evaluate", "runs", "runs-lineage", "runs-compare", "datasets",
         "config")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install -y xvfb xauth)")
def test_screenshots_script_trains_and_grabs_every_view_from_a_real_window(tmp_path):
    from PIL import Image

    out = tmp_path / "shots"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "screenshots.py"), "--fast", "--out", str(out),
                           "--workspace", str(tmp_path / "workspace")],
                          capture_output=True, text=True, timeout=900, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout[:proc.stdout.rindex("}") + 1])
    assert facts["parity"]["passed"] is True
    assert facts["chat"]["question"]
    assert {(row["task"], row["n"]) for row in facts["evaluate"]} == {("tool-use", 2), ("rl-signal", 2)}
    assert len(facts["evaluate"]) == 4  # the SFT and the GRPO model, each on both tasks
    runs = sorted(p.name for p in (tmp_path / "workspace" / "runs").iterdir())
    assert [name.split("-")[2] for name in runs] == ["pretrain", "sft", "grpo"]
    for name in SHOTS:
        path = out / f"{name}.png"
        with Image.open(path) as img:
            assert img.size == (1280, 800), name
            assert len(img.convert("RGB").getcolors(1 << 24)) > 16, f"{name}.png is (nearly) blank"
        assert path.stat().st_size < 300_000, name
