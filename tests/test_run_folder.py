"""A new training writes only into a folder that is missing, empty, a run folder, or holds just what its launcher
wrote; a folder of someone else's files (its own config.json) is refused, and a resume still works."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.train.run_folder import RunFolderError, check_new_run_dir, is_run_folder


def _tiny_config(path: Path, run_dir: Path, tokenizer_dir: Path, data: Path, **extra) -> Path:
    config = {"method": "pretrain", "model": "tiny", "run_dir": str(run_dir), "max_steps": 2, "batch_size": 4,
              "device": "cpu", "precision": "fp32", "log_every": 1, "save_every": 2,
              "data": {"files": [str(data)], "seq_len": 32, "tokenizer": str(tokenizer_dir),
                       "cache_dir": str(data.parent / "cache")}, **extra}
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("contents", [[], ["events.jsonl"], ["checkpoints/"], ["launch.json", "config.json"],
                                      ["config.json", "stdout.log", "stderr.log"], ["config.json", "agent0.log"]])
def test_a_new_run_may_write_into_an_empty_run_or_launcher_made_folder(tmp_path, contents):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in contents:
        (folder / name).mkdir() if name.endswith("/") else (folder / name).write_text("{}")
    check_new_run_dir(folder, folder / "config.json")  # the studio's way: --config run_dir/config.json
    check_new_run_dir(tmp_path / "missing")


@pytest.mark.parametrize("contents", [["config.json"], ["notes.txt"], ["config.json", "data.jsonl", "stdout.log"],
                                      ["model.safetensors"]])
def test_a_folder_of_other_files_is_refused(tmp_path, contents):
    folder = tmp_path / "project"
    folder.mkdir()
    for name in contents:
        (folder / name).write_text("mine")
    assert not is_run_folder(folder)
    with pytest.raises(RunFolderError, match=rf"^run_dir: {folder} is not empty \(.*\) and is not a run folder"):
        check_new_run_dir(folder, tmp_path / "elsewhere.json")
    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        check_new_run_dir(tmp_path / "file")


def test_the_cli_refuses_a_foreign_folder_and_resumes_a_real_run(train_data, tiny_tokenizer_dir, tmp_path, capsys):
    from core.cli import main

    data = train_data["pretrain16"]
    project = tmp_path / "project"  # someone's folder, named as run_dir by a downloaded config
    project.mkdir()
    (project / "config.json").write_text('{"mine": true}')
    config = _tiny_config(tmp_path / "downloaded.json", project, tiny_tokenizer_dir, data)
    assert main(["train", "pretrain", "--config", str(config)]) == 2
    assert "is not empty (config.json) and is not a run folder" in capsys.readouterr().err
    assert (project / "config.json").read_text() == '{"mine": true}' and len(list(project.iterdir())) == 1

    run_dir = tmp_path / "runs" / "r1"  # the studio's way: the folder holds only the config it trains with
    run_dir.mkdir(parents=True)
    config = _tiny_config(run_dir / "config.json", run_dir, tiny_tokenizer_dir, data)
    assert main(["train", "pretrain", "--config", str(config)]) == 0
    assert is_run_folder(run_dir)
    assert main(["train", "pretrain", "--resume", str(run_dir), "--max-steps", "3"]) == 0
    steps = [json.loads(line).get("step") for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert max(steps) == 3


def test_a_cluster_launch_refuses_a_foreign_folder_before_writing_or_submitting(tmp_path, capsys, monkeypatch):
    import os

    from core.cli import main
    from core.launch.targets import make_target, save_targets

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ntouch {tmp_path}/sbatch-called\necho 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    targets = tmp_path / "targets.json"
    save_targets(targets, [make_target("slurm", name="hpc")])
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"mine": true}')
    config = _tiny_config(tmp_path / "downloaded.json", project, tmp_path / "tok", tmp_path / "data.jsonl")
    assert main(["train", "pretrain", "--target", "hpc", "--targets", str(targets), "--config", str(config)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert sorted(p.name for p in project.iterdir()) == ["config.json"] and not (tmp_path / "sbatch-called").exists()
