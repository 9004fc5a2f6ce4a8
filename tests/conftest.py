"""Shared test set-up.

Qt must be told to render offscreen before it is imported anywhere, or a headless run aborts (rc 134).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARED_DATA = REPO.parent / "shared" / "data"

# Area fixtures (tests/fixtures/<area>.py), one line each.
pytest_plugins = [
    "tests.fixtures.train",
    "tests.fixtures.tokenizer",
    "tests.fixtures.data",
    "tests.fixtures.studio",
    "tests.fixtures.infer",
    "tests.fixtures.export",
    "tests.fixtures.rl",
    "tests.fixtures.tool_model",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real datasets (../shared/data beside the repo). A fresh clone without them skips the tests
    that need them; under CI (CI=true) those tests fail instead, so a missing checkout cannot pass as green."""
    if not (SHARED_DATA / "pretrain.jsonl").is_file():
        message = f"needs the shared datasets at {SHARED_DATA} (absent on a fresh clone)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI must have them", pytrace=False)
        pytest.skip(message)
    return SHARED_DATA


# The longest test files, started first: under `pytest -n` (pyproject's addopts) each file runs whole on one
# worker, in collection order, so a long file collected last would leave the other cores idle at the end. Only
# the order changes; `pytest -n 0` runs the same tests in one process. (Measured 2026-12-07, 2-core AVX2 CPU:
# the bundle ~270 s, the calculator model and its RL tests ~250 s, the GPU check's dry run ~100 s.)
FIRST = ("test_packaging.py", "test_agent_rl.py", "test_gpu_check.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: the rest keep their order


def pytest_xdist_auto_num_workers(config):
    """`-n auto`'s worker count: the CPUs this process may use (a container's affinity and CPU quota), at most 8
    (each worker may hold a training run, ~1-2 GB). pytest-xdist itself counts the host's physical cores through
    psutil, which in a 2-CPU container on a large host would start dozens of workers on two CPUs.
    PYTEST_XDIST_AUTO_NUM_WORKERS still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS", "").isdigit():
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" (no quota) or "200000 100000" (two CPUs' worth)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, min(n, 8))
