"""Security basics: loopback by default, no code from untrusted pickles, no writes outside the workspace."""
from __future__ import annotations

import os
import pickle
import re
import subprocess
from pathlib import Path

import pytest

from core.safety import UnsafePathError, contained_path

REPO = Path(__file__).resolve().parents[1]
CODE_DIRS = ("core", "studio", "bench", "webdemo", "scripts")


class _Boom:
    """Unpickling this runs `touch <marker>`: what a malicious .pth would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


def _python_files():
    for top in CODE_DIRS:
        yield from (REPO / top).rglob("*.py") if (REPO / top).is_dir() else ()


# ---- network -------------------------------------------------------------------------------------------------
def test_the_server_and_the_serve_command_default_to_loopback():
    import inspect

    from core.cli import build_parser
    from core.serve import make_server

    assert inspect.signature(make_server).parameters["host"].default == "127.0.0.1"
    args = build_parser().parse_args(["serve", "--model", "some-model"])
    assert args.host == "127.0.0.1"


def test_no_code_binds_all_interfaces_by_default():
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in _python_files()
                 for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
                 if re.search(r"""default\s*=\s*["'](0\.0\.0\.0|::)["']""", line)]
    assert offenders == []


# ---- pickles ---------------------------------------------------------------------------------------------------
def test_every_torch_load_in_the_code_is_weights_only_and_nothing_unpickles_directly():
    import ast

    loads, unsafe = [], []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if owner == "torch" and node.func.attr == "load":
                loads.append(where)
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                if not safe:
                    unsafe.append(f"{where}: torch.load without weights_only=True")
            if owner in ("pickle", "cPickle", "dill", "joblib") and node.func.attr in ("load", "loads"):
                unsafe.append(f"{where}: {owner}.{node.func.attr}")
    assert loads, "expected at least the .pth import and the trainer's resume to load with torch.load"
    assert unsafe == [], unsafe


def test_a_malicious_pickle_in_a_pth_import_is_refused_and_runs_nothing(tiny_tokenizer_dir, tmp_path):
    import torch

    from core.export.imports import ImportCheckpointError, import_checkpoint

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"model.embed_tokens.weight": torch.zeros(4, 4), "x": _Boom(marker)}, evil)
    with pytest.raises(ImportCheckpointError) as info:
        import_checkpoint(evil, tmp_path / "out", tokenizer_dir=tiny_tokenizer_dir)
    assert "evil.pth" in str(info.value)
    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_doctored_optimizer_state_is_refused_on_resume_and_runs_nothing(tmp_path):
    import torch

    from core.train.trainer_state import load_trainer_state

    marker = tmp_path / "pwned"
    path = tmp_path / "optimizer.pt"
    torch.save({"optimizer": {}, "rng": [_Boom(marker)]}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_trainer_state(path)
    assert not marker.exists()


def test_the_trainer_state_it_writes_itself_loads_weights_only(tmp_path):
    import torch

    from core.train.trainer_state import load_trainer_state, rng_state

    model = torch.nn.Linear(3, 3)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    torch.save({"optimizer": opt.state_dict(), "rng": [rng_state(torch.device("cpu"))], "recipe": {"t": {"a": 1.0}}}, tmp_path / "o.pt")
    state = load_trainer_state(tmp_path / "o.pt")
    assert state["rng"][0]["numpy"][0] == "MT19937" and state["optimizer"]["state"]


# ---- paths -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../etc", "../outside", "/etc/passwd", "a/../../b", "", "  ", ".", "x\x00y"])
def test_names_that_leave_their_folder_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError) as info:
        contained_path(tmp_path / "root", name)
    assert repr(name) in str(info.value)


def test_a_symlink_out_of_the_folder_is_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path, root / "link")
    with pytest.raises(UnsafePathError, match="outside"):
        contained_path(root, "link/escaped")
    assert contained_path(root, "sub/ok") == (root / "sub" / "ok").resolve()


def test_run_names_from_configs_become_folders_inside_runs(tmp_path):
    from studio.worker.run_manager import new_run_id

    runs = tmp_path / "runs"
    for name in ["../../etc", "/abs/path", "..", "a/../../b", "\\..\\x", "名字 with spaces"]:
        run_id = new_run_id(name)
        assert contained_path(runs, run_id).parent == runs.resolve(), (name, run_id)


def test_a_tokenizer_name_cannot_write_outside_the_workspace(qtbot, tmp_path):
    from studio.panes.datasets.presenter import DatasetsPresenter
    from studio.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()

    class Context:
        workspace = ws

    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "hello world"}\n' * 50)
    presenter = DatasetsPresenter(Context())
    with qtbot.waitSignal(presenter.failed, timeout=5000) as failed:
        assert presenter.train_tokenizer("../../etc", 300, files=[data]) is None
    assert "outside" in failed.args[0] and "../../etc" in failed.args[0]
    assert not (tmp_path / "etc").exists() and not list(tmp_path.glob("**/tokenizer.json"))
