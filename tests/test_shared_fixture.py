"""tests/fixtures/shared.py: a session build shared by pytest-xdist's workers runs once and reads back equal."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.fixtures.shared import built_once


def test_a_build_shared_by_workers_runs_once_and_reads_back_the_same_paths(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")  # as under `pytest -n`: the result goes through the file
    name, calls = f"probe-{uuid.uuid4().hex}", []

    def build(folder: Path) -> dict:
        calls.append(folder)
        (folder / "weights").write_text("1")
        return {"run": folder, "early": [folder / "weights", folder], "answered": 58, "note": None}

    root = tmp_path_factory.getbasetemp().parent
    try:
        first = built_once(tmp_path_factory, name, build)
        second = built_once(tmp_path_factory, name, build)  # another worker asking: read back, not rebuilt
        assert calls == [root / name] and second == first
        assert second["early"][0].read_text() == "1" and second["answered"] == 58 and second["note"] is None
    finally:
        for leftover in (root / f"{name}.json", root / f"{name}.lock", root / name / "weights"):
            leftover.unlink(missing_ok=True)
        (root / name).rmdir()


def test_a_failed_build_leaves_nothing_and_the_next_caller_builds_again(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    name, calls = f"probe-{uuid.uuid4().hex}", []
    root = tmp_path_factory.getbasetemp().parent

    def build(folder: Path) -> int:
        calls.append(folder)
        if len(calls) == 1:
            raise RuntimeError("no seed gave a model that copies")
        return 7

    try:
        with pytest.raises(RuntimeError, match="no seed"):
            built_once(tmp_path_factory, name, build)
        assert not (root / f"{name}.json").exists()
        assert built_once(tmp_path_factory, name, build) == 7 and len(calls) == 2
    finally:
        for leftover in (root / f"{name}.json", root / f"{name}.lock"):
            leftover.unlink(missing_ok=True)
        (root / name).rmdir()
