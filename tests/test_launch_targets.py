"""Launch targets and their launch files: targets.json, the sbatch script, the SkyPilot task YAML (checked by
SkyPilot's own parser), `minimind launch-file`, and the studio following a SkyPilot run through a stand-in `sky`
command (no cloud is contacted). The real Slurm cluster is in test_slurm.py, multi-node torchrun in
test_multinode.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.launch.launch_file import render_launch_file, write_launch_file
from core.launch.targets import (LocalTarget, TargetError, find_target, load_default_target, load_targets,
                                 make_target, save_targets)

REPO = Path(__file__).resolve().parents[1]
SKYPILOT_PYTHON = REPO / ".venv" / "skypilot" / "bin" / "python"  # scripts/install.sh --dev (own venv: pins)


def slurm(**fields):
    return make_target("slurm", **{"name": "hpc", "nodes": 2, "gpus_per_node": 4, **fields})


def sky(**fields):
    return make_target("skypilot", **{"name": "cloud", "nodes": 2, "gpus_per_node": 8, "accelerators": "A100:8",
                                      **fields})


# ------------------------------------------------------------------------------------------------ targets
def test_targets_round_trip_through_targets_json_with_local_always_first(tmp_path):
    path = tmp_path / "targets.json"
    assert [t.name for t in load_targets(path)] == ["local"]  # no file yet: this machine only
    save_targets(path, [slurm(), sky()], default="hpc")
    targets = load_targets(path)
    assert [(t.name, t.kind) for t in targets] == [("local", "local"), ("hpc", "slurm"), ("cloud", "skypilot")]
    assert targets[1] == slurm() and load_default_target(path) == "hpc"
    assert "local" not in {t["name"] for t in json.loads(path.read_text())["targets"]}


def test_a_bad_target_is_reported_with_its_file_and_field(tmp_path):
    path = tmp_path / "targets.json"
    path.write_text(json.dumps({"targets": [{"kind": "slurm", "name": "hpc", "nodes": 0}]}))
    with pytest.raises(TargetError, match=r"targets\.json: targets\.0\.slurm\.nodes: .*greater than or equal"):
        load_targets(path)
    with pytest.raises(TargetError, match="two targets are named 'hpc'"):
        save_targets(path, [slurm(), slurm()])
    with pytest.raises(TargetError, match="reserved"):
        save_targets(path, [make_target("slurm", name="local")])
    with pytest.raises(TargetError, match="no launch target named 'gpu' .*known: local"):
        find_target([LocalTarget(name="local")], "gpu")


# ------------------------------------------------------------------------------------------------- sbatch
def test_the_sbatch_script_runs_one_torchrun_agent_per_node_meeting_at_the_first_node():
    script = render_launch_file(slurm(partition="gpu", time_limit="2:00:00", setup="source .venv/bin/activate"),
                                "/shared/runs/r1")
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n" in script
    assert "#SBATCH --gpus-per-node=4" in script and "#SBATCH --partition=gpu" in script
    assert "#SBATCH --output=/shared/runs/r1/slurm-%j.out" in script
    assert 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    line = " ".join(script[script.index("\nsrun ") + 1:].split())
    assert line.startswith('srun --ntasks-per-node=1 --kill-on-bad-exit=1 torchrun --nnodes "$SLURM_NNODES" \\ '
                           '--nproc-per-node 4 \\ --rdzv-id "$SLURM_JOB_ID" \\ --rdzv-backend c10d \\ '
                           '--rdzv-endpoint "$head_node:29500" \\ -m core.train \\ '
                           '--config /shared/runs/r1/config.json')
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # valid shell


def test_a_resume_script_passes_the_run_folder_as_the_nodes_see_it(tmp_path):
    target = slurm(remote_runs_dir="/cluster/runs", use_gpus=False)
    (tmp_path / "r1").mkdir()
    path = write_launch_file(target, tmp_path / "r1", resume=True)
    script = path.read_text()
    assert path.name == "launch.sbatch" and os.access(path, os.X_OK)
    assert script.rstrip().endswith("--resume /cluster/runs/r1") and "--gpus-per-node" not in script


# ------------------------------------------------------------------------------------------------ SkyPilot
def _skypilot_parse(path: Path) -> dict:
    """The task as SkyPilot itself reads it (sky.Task.from_yaml), summarised as JSON."""
    code = ("import json, sys, sky\n"
            "t = sky.Task.from_yaml(sys.argv[1])\n"
            "r = list(t.resources)[0]\n"
            "print(json.dumps({'name': t.name, 'num_nodes': t.num_nodes, 'run': t.run, 'setup': t.setup,\n"
            "  'accelerators': r.accelerators, 'workdir': t.workdir, 'envs': t.envs,\n"
            "  'storage_mounts': {k: [v.source, str(v.mode)] for k, v in t.storage_mounts.items()},\n"
            "  'file_mounts': t.file_mounts}))\n")
    proc = subprocess.run([str(SKYPILOT_PYTHON), "-c", code, str(path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HOME": str(path.parent)})  # ~/.sky stays in tmp
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_skypilot_parses_the_task_yaml_with_nodes_accelerators_the_mounted_runs_bucket_and_torchrun(tmp_path):
    if not SKYPILOT_PYTHON.exists():
        reason = f"SkyPilot is not installed at {SKYPILOT_PYTHON} (scripts/install.sh --dev puts it there)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    (tmp_path / "r1").mkdir()
    target = sky(bucket="s3://team-minimind/runs", setup="pip install -e .")
    task = _skypilot_parse(write_launch_file(target, tmp_path / "r1"))
    assert task["name"] == "minimind-r1" and task["num_nodes"] == 2
    assert task["accelerators"] == {"A100": 8}
    assert task["storage_mounts"] == {"/minimind-runs": ["s3://team-minimind/runs", "StorageMode.MOUNT"]}
    assert task["workdir"] == str(REPO) and task["setup"].strip() == "pip install -e ."
    run = " ".join(task["run"].split())
    assert ('torchrun --nnodes "$SKYPILOT_NUM_NODES" \\ --nproc-per-node 8 \\ --rdzv-id "$SKYPILOT_TASK_ID" \\ '
            '--rdzv-backend c10d \\ --rdzv-endpoint "$head_node:29500" \\ -m core.train \\ '
            '--config /minimind-runs/r1/config.json') in run
    assert 'head_node=$(echo "$SKYPILOT_NODE_IPS" | head -n 1)' in run


def test_the_skypilot_yaml_without_a_bucket_uses_the_shared_path_and_cpu_nodes(tmp_path):
    import yaml

    target = sky(accelerators="", remote_runs_dir="/mnt/shared/runs", workdir="/opt/minimind", cloud="kubernetes")
    task = yaml.safe_load(render_launch_file(target, tmp_path / "r2", resume=True))
    assert task["num_nodes"] == 2 and task["resources"] == {"cloud": "kubernetes"}
    assert "file_mounts" not in task and "workdir" not in task
    assert task["run"].startswith("cd /opt/minimind\n") and task["run"].rstrip().endswith("--resume /mnt/shared/runs/r2")


# --------------------------------------------------------------------------------------------------- CLI
def test_minimind_launch_file_prints_the_script_without_submitting(tmp_path, capsys):
    from core.cli import main

    targets = tmp_path / "targets.json"
    save_targets(targets, [slurm(nodes=3)])
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"method": "pretrain", "run_dir": str(tmp_path / "runs" / "x"),
                                  "data": {"files": ["a.jsonl"], "tokenizer": "tok"}}))
    assert main(["launch-file", "--target", "hpc", "--targets", str(targets), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash") and "#SBATCH --nodes=3" in out
    assert f"--config {tmp_path}/runs/x/config.json" in out and not (tmp_path / "runs").exists()
    assert main(["launch-file", "--target", "local", "--targets", str(targets), "--config", str(config)]) == 2
    assert "has no launch file" in capsys.readouterr().err


# ------------------------------------------------------------------ the studio with a stand-in `sky` command
FAKE_SKY = """#!/bin/sh
echo "$@" >> "$FAKE_SKY_DIR/calls"
case "$1" in
  launch) n=$(($(cat "$FAKE_SKY_DIR/next" 2>/dev/null || echo 7))); echo $((n + 1)) > "$FAKE_SKY_DIR/next"
          echo "Job submitted, ID: $n"; echo "Job ID: $n" ;;
  queue) [ -f "$FAKE_SKY_DIR/down" ] && { echo "Failed to connect to the API server" >&2; exit 1; }
         echo "ID  NAME  SUBMITTED  STARTED  DURATION  RESOURCES  STATUS  LOG"
         echo "$(cat "$FAKE_SKY_DIR/job") minimind-x  1 min ago  1 min ago  1m  2x[A100:8]  $(cat "$FAKE_SKY_DIR/status")  ~/sky_logs/x" ;;
esac
"""


@pytest.fixture()
def fake_sky(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sky").write_text(FAKE_SKY)
    (bin_dir / "sky").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SKY_DIR", str(tmp_path))
    return tmp_path


def _append_events(run_dir: Path, *events: dict) -> None:
    """What rank 0 on the cluster appends to the shared run folder (only the fields the studio reads)."""
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        for ev in events:
            fh.write(json.dumps({"v": 1, "time": time.time(), **ev}) + "\n")


def test_the_studio_submits_follows_cancels_and_resumes_a_skypilot_run_and_never_fails_it_when_offline(
        qtbot, store, workspace, fake_sky):
    from studio.worker.run_manager import RunManager

    save_targets(workspace.root / "targets.json", [sky(nodes=2)])
    manager = RunManager(store, workspace.runs_dir, poll_ms=50)
    manager.remote.interval_s = 0.05
    try:
        (fake_sky / "job").write_text("7")
        (fake_sky / "status").write_text("PENDING")
        run_id = manager.launch({"method": "pretrain", "name": "sky", "target": "cloud"})
        run_dir = workspace.runs_dir / run_id
        job = json.loads((run_dir / "launch.json").read_text())
        assert (job["target"], job["kind"], job["job_id"]) == ("cloud", "skypilot", "7")
        assert json.loads((run_dir / "config.json").read_text())["run_dir"] == str(run_dir)
        assert "--cluster minimind" in (fake_sky / "calls").read_text()
        qtbot.waitUntil(lambda: "SkyPilot job 7: PENDING" in store.get_run(run_id).status_message, timeout=10_000)

        (fake_sky / "status").write_text("RUNNING")
        _append_events(run_dir, {"type": "run_started", "step": 0, "method": "pretrain", "world_size": 16},
                       {"type": "metric", "step": 1, "metrics": {"loss": 5.0}})
        qtbot.waitUntil(lambda: store.get_run(run_id).status == "running", timeout=10_000)
        (fake_sky / "down").write_text("")  # the connection is lost: the run keeps its status
        qtbot.waitUntil(lambda: "cannot reach SkyPilot" in store.get_run(run_id).status_message, timeout=10_000)
        qtbot.wait(300)
        assert store.get_run(run_id).status == "running" and run_id in manager.live_run_ids()
        (fake_sky / "down").unlink()

        manager.stop(run_id)
        assert "cancel --yes minimind 7" in (fake_sky / "calls").read_text().splitlines()
        _append_events(run_dir, {"type": "run_finished", "step": 1, "status": "stopped"})
        (fake_sky / "status").write_text("CANCELLED")
        with qtbot.waitSignal(manager.runFinished, timeout=10_000) as finished:
            pass
        assert finished.args == [run_id, "stopped"]

        manager.resume(run_id)  # resubmitted with --resume as a new job
        job = json.loads((run_dir / "launch.json").read_text())
        assert job["job_id"] == "8" and store.get_run(run_id).status == "starting"
        assert (run_dir / "sky-task.yaml").read_text().rstrip().endswith(f"--resume {run_dir}")
    finally:
        for rid in manager.live_run_ids():
            store.update_run(rid, status="stopped")
        manager.shutdown()


# ------------------------------------------------------------------------------------------ Settings dialog
def test_the_settings_dialog_edits_targets_previews_the_launch_file_and_saves_targets_json(qtbot, workspace):
    from PySide6.QtWidgets import QSpinBox

    from studio.dialogs.settings import SettingsDialog

    dialog = SettingsDialog(workspace.targets_path)
    qtbot.addWidget(dialog)
    assert dialog.editor.names() == ["local"] and not dialog.widgets["name"].isEnabled()
    dialog.kind.setCurrentText("slurm")
    dialog._refresh(dialog.editor.add("slurm"))
    nodes = dialog.widgets["nodes"]
    assert isinstance(nodes, QSpinBox)
    nodes.setValue(4)
    dialog.widgets["name"].setText("bad name!")
    assert not dialog.apply() and "name" in dialog.error.text()  # the form says which field is wrong
    dialog.widgets["name"].setText("hpc")
    assert dialog.apply() and "#SBATCH --nodes=4" in dialog.preview.toPlainText()
    dialog.default.setCurrentText("hpc")
    dialog.save()
    assert [t.name for t in load_targets(workspace.targets_path)] == ["local", "hpc"]
    assert find_target(load_targets(workspace.targets_path), "hpc").nodes == 4
    assert load_default_target(workspace.targets_path) == "hpc"
