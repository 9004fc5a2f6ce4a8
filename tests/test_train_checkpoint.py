"""Checkpoint writing is atomic and verified: broken checkpoints are found, named, and skipped on resume."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.train import checkpoint as ck


def _write(tmp):
    torch.save({"w": torch.arange(1000.0)}, tmp / "optimizer.pt")
    (tmp / "model.safetensors").write_bytes(b"x" * 4096)


def _save(run_dir, step, keep=None):
    return ck.save_checkpoint(run_dir, step, _write, {"epoch": 0, "batch_in_epoch": step}, keep_last=keep)


def test_save_writes_a_complete_checkpoint_and_points_latest_at_it(tmp_path):
    path = _save(tmp_path, 7)
    assert path.name == "step-000007"
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-000007"
    state = ck.verify_checkpoint(path)
    assert state["step"] == 7 and set(state["files"]) == {"optimizer.pt", "model.safetensors"}
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_keep_last_removes_the_oldest(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]


def test_truncated_file_is_detected_with_a_clear_message(tmp_path):
    path = _save(tmp_path, 5)
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ck.CheckpointError, match=r"model.safetensors: 100 bytes, expected 4096; .*truncated"):
        ck.verify_checkpoint(path)


def test_same_size_corruption_is_caught_by_the_hash(tmp_path):
    path = _save(tmp_path, 5)
    (path / "model.safetensors").write_bytes(b"y" * 4096)
    with pytest.raises(ck.CheckpointError, match="sha256"):
        ck.verify_checkpoint(path)


def test_resume_falls_back_to_the_previous_complete_checkpoint_with_a_warning(tmp_path):
    _save(tmp_path, 10)
    newest = _save(tmp_path, 20)
    (newest / "optimizer.pt").write_bytes(b"")  # e.g. the disk filled up while copying
    warnings = []
    found = ck.find_resumable(tmp_path, warnings.append)
    assert found[0].name == "step-000010" and found[1]["step"] == 10
    assert len(warnings) == 1 and "step-000020" in warnings[0] and "falling back" in warnings[0]


def test_a_save_killed_midway_leaves_the_previous_checkpoint_current(tmp_path):
    _save(tmp_path, 10)

    def dies(tmp):
        _write(tmp)
        raise KeyboardInterrupt  # the process is killed while writing step 20

    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(tmp_path, 20, dies, {"epoch": 0, "batch_in_epoch": 20})
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-000010"
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step-000010"]
    found = ck.find_resumable(tmp_path, lambda m: None)
    assert found[0].name == "step-000010"
    ck.prune_checkpoints(tmp_path, keep_last=3)  # the next save also clears the dead temp dir
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_missing_state_json_means_incomplete(tmp_path):
    path = _save(tmp_path, 3)
    (path / "state.json").unlink()
    with pytest.raises(ck.CheckpointError, match="not completely written"):
        ck.verify_checkpoint(path)
    (path / "state.json").write_text("{not json")
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.verify_checkpoint(path)


def test_model_checkpoints_lists_the_step_folders_that_hold_a_model_by_run(tmp_path):
    from core.train.checkpoint import model_checkpoints

    for run, step, has_model in (("b", 2, True), ("a", 1, True), ("a", 3, False), ("a", 2, True)):
        folder = tmp_path / run / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        if has_model:
            (folder / "model_config.json").write_text("{}")
    (tmp_path / "a" / "checkpoints" / ".step-000004.tmp-1").mkdir()  # a save in progress
    (tmp_path / "notes.txt").write_text("not a run")
    assert [(run, Path(path).name) for run, path in model_checkpoints(tmp_path)] == [
        ("a", "step-000001"), ("a", "step-000002"), ("b", "step-000002")]
    assert model_checkpoints(tmp_path / "missing") == []
